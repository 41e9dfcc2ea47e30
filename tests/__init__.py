"""The test suite; a package so that tests.support resolves here before any other top-level `tests`."""
