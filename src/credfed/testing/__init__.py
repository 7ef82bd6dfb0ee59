"""Test support shipped with credfed: the storage suite every backend must
pass, and test-data factories. Needs pytest (a dev dependency)."""

import pytest

# The suite's asserts live in the package, not under tests/: ask pytest to
# rewrite them too, so a failing backend gets readable diffs.
pytest.register_assert_rewrite("credfed.testing.store_suite")
