"""credfed: a federation of national registries of vocational credentials."""
