"""Small helpers the pages and templates share: value display, sealed key tokens for URLs, times and sizes."""

from __future__ import annotations

import base64
import datetime as dt
import os

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: a key in a URL: a few KB at most (a key is at most 2 KB + 1 KB of attribute values)
MAX_KEY_TOKEN = 8192
_TOKEN_AAD = b"dynavault-console-item-key"


def key_token(key: dict, secret: bytes) -> str:
    """An item's key (DynamoDB JSON) as a URL-safe token, sealed (AES-GCM) under the session's own key: item
    keys are user data, and URLs end up in browser history; a token means nothing outside its session."""
    nonce = os.urandom(12)
    sealed = AESGCM(secret).encrypt(nonce, orjson.dumps(key, option=orjson.OPT_SORT_KEYS), _TOKEN_AAD)
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def parse_key_token(token: str, secret: bytes) -> dict | None:
    if not token or len(token) > MAX_KEY_TOKEN:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = orjson.loads(AESGCM(secret).decrypt(raw[:12], raw[12:], _TOKEN_AAD))
    except (ValueError, InvalidTag, orjson.JSONDecodeError):
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
