"""Waiting between retries: exponential backoff with jitter, and the server's own Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before retry `attempt` (0-based): half fixed, half random, so clients spread out."""
    ceiling = min(cap, base * 2**attempt)
    # Jitter, not a secret: the standard PRNG is the right tool.
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # nosec B311


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
