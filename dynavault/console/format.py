"""Small pure helpers the pages and templates share: value display, key tokens for URLs, times and sizes."""

from __future__ import annotations

import base64
import datetime as dt

import orjson

#: a key in a URL: a few KB at most (a key is at most 2 KB + 1 KB of attribute values)
MAX_KEY_TOKEN = 8192


def key_token(key: dict) -> str:
    """An item's key (DynamoDB JSON) as a URL-safe token."""
    return base64.urlsafe_b64encode(orjson.dumps(key, option=orjson.OPT_SORT_KEYS)).decode().rstrip("=")


def parse_key_token(token: str) -> dict | None:
    if not token or len(token) > MAX_KEY_TOKEN:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def short(value: object, limit: int = 60) -> str:
    """One attribute value for a table cell: strings and numbers bare, the rest as compact DynamoDB JSON."""
    if isinstance(value, dict) and len(value) == 1:
        (kind, inner), = value.items()
        if kind in ("S", "N") and isinstance(inner, str):
            text = inner
        elif kind == "BOOL":
            text = "true" if inner else "false"
        elif kind == "NULL":
            text = "null"
        else:
            text = orjson.dumps(value).decode()
    else:
        text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def when(value: object) -> str:
    """Epoch seconds (or a datetime) as 'YYYY-MM-DD HH:MM:SS UTC'."""
    if isinstance(value, dt.datetime):
        stamp = value.astimezone(dt.UTC)
    elif isinstance(value, int | float):
        stamp = dt.datetime.fromtimestamp(value, dt.UTC)
    else:
        return "" if value is None else str(value)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def size(value: object) -> str:
    if not isinstance(value, int | float):
        return ""
    n = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(value)


def key_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1] if arn else ""
