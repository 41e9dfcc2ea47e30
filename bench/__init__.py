"""Benchmarks: `.venv/bin/python bench/NAME.py` from the repository root; they share tests.support with the tests."""
