"""The conformance kits (trainyard.testing) run on every registered kind of each family."""

import pytest

# Before the kits are imported: their asserts then report the values they compared.
pytest.register_assert_rewrite("trainyard.testing")
