"""The access log: one line per API request, off unless ``--access-log PATH`` is given.

A line carries who asked for what and how it went (time, request id, principal, account, region, service,
operation, table, status, error type, duration, bytes in and out, peer address, user agent) and never what
was asked for: no item data, no key values, no expression or parameter text, no secrets or signatures, so it
may sit in plaintext next to the data dir (DESIGN.md invariant 1; tests/server/test_access_log.py scans it
for canaries). A table name is written only when it is a valid DynamoDB table name (table names are
metadata DynamoDB itself shows in plaintext); anything else a client typed there is written as "-".

Formats (``--log-format``): ``text``, Apache's combined format followed by ``key=value`` fields, and
``json``, one JSON object per line. Each line is one ``write`` to an O_APPEND descriptor (no user-space
buffer), so lines from several processes never interleave and a crash loses none that were answered.
Off, the server pays one ``is not None`` test per request.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

import orjson

from dynavault.dynamodb.tables import named_tables
from dynavault.logsafe import escape

FORMATS = ("text", "json")
_TABLE_NAME = re.compile(r"(?:arn:aws[a-z-]*:dynamodb:[a-z0-9-]{1,32}:\d{12}:table/)?[a-zA-Z0-9_.-]{3,255}")
_MAX_AGENT = 256
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _tables(params: dict | None) -> str:
    """The table names a request names (comma-separated), only names that are valid table names."""
    names = [n for n in named_tables(params) if _TABLE_NAME.fullmatch(n)]
    return ",".join(names) if names else "-"


def _error_type(status: int, payload: bytes) -> str:
    if status < 400:
        return "-"
    try:
        kind = orjson.loads(payload).get("__type", "")
    except (orjson.JSONDecodeError, AttributeError):
        return "-"
    return str(kind).rsplit("#", 1)[-1] or "-"


class AccessLog:
    """Appends one line per request to ``path`` (mode 0600; ``-`` is stderr)."""

    def __init__(self, path: str, fmt: str = "text") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.path = path
        self.format = fmt
        if path == "-":
            self._fd = sys.stderr.fileno()
            self._owned = False
        else:
            # owner-only, like the data dir: the log names principals, accounts and tables
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._owned = True
        self.failures = 0
        self._second = -1  # the last whole second formatted, and its text (one strftime per second)
        self._stamp = ""

    def __repr__(self) -> str:
        return f"AccessLog({self.path!r}, {self.format!r})"

    def request(self, *, request_id: str, service: str, operation: str, caller: Any, params: Any,
                status: int, payload: bytes, bytes_in: int, started: float, peer: str, user_agent: str) -> None:
        """Write the line of one answered request. ``caller`` is None when the request was refused before
        its signature was checked; ``params`` None when its body was never parsed."""
        now = time.time()
        fields = {
            "time": now,
            "request_id": request_id,
            "principal": caller.principal_arn if caller is not None else "-",
            "account": caller.account if caller is not None else "-",
            "region": caller.region if caller is not None else "-",
            "service": service,
            "operation": operation,
            # only what passed validation: a refused request's "table" could be any text
            "table": _tables(params) if caller is not None else "-",
            "status": status,
            "error": _error_type(status, payload),
            "duration_ms": round((time.perf_counter() - started) * 1000.0, 3),
            "bytes_in": bytes_in,
            "bytes_out": len(payload),
            "peer": peer,
            "user_agent": escape(user_agent[:_MAX_AGENT]) if user_agent else "-",
        }
        second = int(now)
        if second != self._second:
            t = time.gmtime(second)
            self._stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", t) if self.format == "json" else
                           f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:"
                           f"{t.tm_sec:02d} +0000")
            self._second = second
        line = self._json(fields, self._stamp) if self.format == "json" else self._text(fields, self._stamp)
        try:
            os.write(self._fd, line)
        except OSError:
            # a full disk must not fail the request that was already answered; counted, not raised
            self.failures += 1

    @staticmethod
    def _json(fields: dict, stamp: str) -> bytes:
        fields["time"] = f"{stamp}.{int(fields['time'] % 1 * 1000):03d}Z"
        return orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)

    @staticmethod
    def _text(f: dict, stamp: str) -> bytes:
        agent = f["user_agent"].replace('"', "'")
        line = (f'{f["peer"]} - {f["principal"]} [{stamp}] "POST / {f["service"]}.{f["operation"]}" {f["status"]} '
                f'{f["bytes_out"]} "-" "{agent}" request_id={f["request_id"]} account={f["account"]} '
                f'region={f["region"]} table={f["table"]} error={f["error"]} duration_ms={f["duration_ms"]} '
                f'bytes_in={f["bytes_in"]}\n')
        return escape(line[:-1]).encode("utf-8", "replace") + b"\n"

    def close(self) -> None:
        if self._owned:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._owned = False
