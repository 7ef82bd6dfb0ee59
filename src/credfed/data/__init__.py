"""Packaged reference data (code lists); see ATTRIBUTION.md. Read through
``importlib.resources.files("credfed.data")``; ``credfed.codelists`` parses it."""
