"""Timestamps as AWS's JSON protocols let them through: epoch seconds (a number or its text) or ISO 8601
text, which with no zone means UTC (never this machine's local time)."""

from __future__ import annotations

import datetime


def epoch_seconds(value: object) -> float | None:
    """``value`` as epoch seconds, or None when it is neither form (a bool is not a number here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).timestamp()
