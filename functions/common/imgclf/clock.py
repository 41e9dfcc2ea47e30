"""The project's one timestamp format, for every record that says when something happened."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """Now in UTC, ISO 8601 with milliseconds, e.g. 2026-11-29T23:15:00.123+00:00."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
