"""Helpers that tests and benchmarks share, imported as tests.support.* with the repository root on the path."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
