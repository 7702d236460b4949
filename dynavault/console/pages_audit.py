"""The audit page: CloudTrail events for a table or a key, filterable, and the KMS timeline per table."""

from __future__ import annotations

import re
import time

from .app import Page
from .chart import timeline
from .http import Response
from .tables_view import event_detail

#: events read per page view at most (LookupEvents pages of 50)
MAX_EVENTS = 1000
#: event rows shown (newest first); the chart counts every event read
SHOWN = 100
_WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
_CHART_TABLES = 6


def audit(page: Page, _m: re.Match) -> Response:
    q = page.request.query
    table, key, name = q.get("table", "").strip(), q.get("key", "").strip(), q.get("event", "").strip()
    errors_only = q.get("errors") == "1"
    window = q.get("window", "1h") if q.get("window") in _WINDOWS else "1h"
    now = time.time()
    start = now - _WINDOWS[window]
    caller = page.calls.caller
    attribute = None
    if key:
        arn = key if key.startswith("arn:") else f"arn:aws:kms:{caller.region}:{caller.account}:key/{key}"
        attribute = ("ResourceName", arn)
    elif name:
        attribute = ("EventName", name)
    raw = page.calls.events(attribute=attribute, max_pages=MAX_EVENTS // 50, start_time=start)
    rows = []
    per_table: dict[str, list[tuple[float, str, bool]]] = {}
    for event in raw:
        detail = event_detail(event)
        when = event.get("EventTime") or 0.0
        if detail["table"]:
            per_table.setdefault(detail["table"], []).append((when, event.get("EventName", ""), bool(detail["error"])))
        if table and detail["table"] != table:
            continue
        if name and event.get("EventName") != name:
            continue
        if errors_only and not detail["error"]:
            continue
        rows.append({"event": event, **detail})
    if table:
        chosen = [table] if table in per_table else []
    else:
        chosen = sorted(per_table, key=lambda t: -len(per_table[t]))[:_CHART_TABLES]
    charts = [timeline(t, per_table[t], start=_chart_start(per_table[t], start, now), end=now) for t in chosen]
    return page.render("audit.html", rows=rows[:SHOWN], shown=min(len(rows), SHOWN), matched=len(rows),
                       read=len(raw), charts=charts, q=q, window=window, windows=list(_WINDOWS),
                       errors_only=errors_only)


def _chart_start(events: list[tuple[float, str, bool]], window_start: float, now: float) -> float:
    """The chart spans the table's events (a little before the first), not the whole window: a burst of key
    use minutes ago is a shape, not one spike at the right edge. At least 10 seconds wide."""
    first = min(when for when, _, _ in events)
    span = max(now - first, 10.0)
    return max(window_start, now - span * 1.05)


ROUTES = [("GET", r"/audit/?", audit)]
