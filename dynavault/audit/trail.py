"""CloudTrail-shaped audit trail: JSON lines per (account, region), rotated by size, read by LookupEvents.

Layout: ``<root>/<account>/<region>/events-<seq>.jsonl``. A line is one event, exactly as CloudTrail's
``CloudTrailEvent`` string carries it. Files are only appended to, so a reader never sees half a rotation.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import pathlib
import re
import threading
from collections.abc import Callable
from typing import IO

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError

_SEGMENT = re.compile(r"^events-(\d{6})\.jsonl$")
_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: LookupAttributes key -> how to read it from an event
_ATTRIBUTES = (
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
)


def _parse_time(text: str) -> float:
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC).timestamp()


def event_username(event: dict) -> str | None:
    ident = event.get("userIdentity") or {}
    if ident.get("userName"):
        return ident["userName"]
    if ident.get("type") == "AWSService":
        return ident.get("invokedBy")
    if ident.get("type") == "Root":
        return "root"
    arn = ident.get("arn") or ""
    return arn.rsplit("/", 1)[-1] if "/" in arn else None


def _summary(event: dict, line: bytes) -> dict:
    """The LookupEvents ``Event`` shape of one stored event."""
    out: dict = {
        "EventId": event.get("eventID"),
        "EventName": event.get("eventName"),
        "ReadOnly": "true" if event.get("readOnly") else "false",
        "EventTime": _parse_time(event["eventTime"]),
        "EventSource": event.get("eventSource"),
        "Resources": [
            {"ResourceType": r.get("type"), "ResourceName": r.get("ARN")}
            for r in event.get("resources") or []
        ],
        "CloudTrailEvent": line.decode(),
    }
    access_key = (event.get("userIdentity") or {}).get("accessKeyId")
    if access_key:
        out["AccessKeyId"] = access_key
    username = event_username(event)
    if username:
        out["Username"] = username
    return out


def _matches(event: dict, key: str, value: str) -> bool:
    if key == "EventId":
        return event.get("eventID") == value
    if key == "EventName":
        return event.get("eventName") == value
    if key == "EventSource":
        return event.get("eventSource") == value
    if key == "ReadOnly":
        return ("true" if event.get("readOnly") else "false") == value.lower()
    if key == "Username":
        return event_username(event) == value
    if key == "AccessKeyId":
        return (event.get("userIdentity") or {}).get("accessKeyId") == value
    resources = event.get("resources") or []
    if key == "ResourceType":
        return any(r.get("type") == value for r in resources)
    if key == "ResourceName":
        return any(r.get("ARN") == value for r in resources)
    return False


class _Log:
    """One (account, region) log: the open segment and its size."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        segments = sorted(self.segments())
        self.seq = int(_SEGMENT.match(segments[-1].name).group(1)) if segments else 0
        self.fh: IO[bytes] | None = None
        self.size = 0

    def segments(self) -> list[pathlib.Path]:
        return sorted(p for p in self.directory.iterdir() if _SEGMENT.match(p.name))

    def append(self, line: bytes, rotate_bytes: int) -> None:
        if self.fh is None:
            path = self.directory / f"events-{self.seq:06d}.jsonl"
            self.fh = open(path, "ab")  # noqa: SIM115 - kept open for the life of the trail
            self.size = self.fh.tell()
        if self.size and self.size + len(line) > rotate_bytes:
            self.fh.close()
            self.seq += 1
            self.fh = open(self.directory / f"events-{self.seq:06d}.jsonl", "ab")  # noqa: SIM115
            self.size = 0
        # One write + flush per event: readers (LookupEvents, other processes) see it at once.
        self.fh.write(line)
        self.fh.flush()
        self.size += len(line)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class AuditTrail:
    def __init__(self, root: pathlib.Path, rotate_bytes: int = 16 << 20) -> None:
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = max(1, int(rotate_bytes))
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, str], _Log] = {}

    # -- writing -------------------------------------------------------------------------------------------

    def _log(self, account: str, region: str) -> _Log:
        log = self._logs.get((account, region))
        if log is None:
            if not _SAFE.match(account) or not _SAFE.match(region):
                raise ValueError("bad account or region for the audit trail")
            log = _Log(self.root / account / region)
            self._logs[(account, region)] = log
        return log

    def record(self, event: dict) -> None:
        """Append one event to the log of its ``recipientAccountId`` and ``awsRegion``."""
        line = orjson.dumps(event) + b"\n"
        with self._lock:
            self._log(event["recipientAccountId"], event["awsRegion"]).append(line, self.rotate_bytes)

    def close(self) -> None:
        with self._lock:
            for log in self._logs.values():
                log.close()

    # -- reading -------------------------------------------------------------------------------------------

    def _lines(self, account: str, region: str) -> list[bytes]:
        if not _SAFE.match(account) or not _SAFE.match(region):
            return []
        directory = self.root / account / region
        if not directory.is_dir():
            return []
        with self._lock:
            paths = sorted(p for p in directory.iterdir() if _SEGMENT.match(p.name))
            lines: list[bytes] = []
            for path in paths:
                with open(path, "rb") as fh:
                    lines.extend(ln for ln in fh.read().split(b"\n") if ln)
        return lines

    def events(self, account: str, region: str) -> list[dict]:
        """All events of (account, region), oldest first."""
        return [orjson.loads(ln) for ln in self._lines(account, region)]

    def operations(self) -> dict[str, Callable[[Caller, dict], dict]]:
        return {"LookupEvents": self.lookup_events}

    def lookup_events(self, caller: Caller, params: dict) -> dict:
        attrs = params.get("LookupAttributes") or []
        if not isinstance(attrs, list):
            raise AWSError("InvalidLookupAttributesException", "LookupAttributes must be a list.")
        if len(attrs) > 1:
            raise AWSError(
                "InvalidLookupAttributesException", "You cannot specify more than one lookup attribute."
            )
        filt: tuple[str, str] | None = None
        if attrs:
            key = attrs[0].get("AttributeKey") if isinstance(attrs[0], dict) else None
            value = attrs[0].get("AttributeValue") if isinstance(attrs[0], dict) else None
            if key not in _ATTRIBUTES:
                raise AWSError(
                    "InvalidLookupAttributesException",
                    f"1 validation error detected: Value '{key}' at 'lookupAttributes.1.member.attributeKey' "
                    "failed to satisfy constraint: Member must satisfy enum value set: "
                    "[" + ", ".join(_ATTRIBUTES) + "]",
                )
            if not isinstance(value, str) or not value:
                raise AWSError(
                    "InvalidLookupAttributesException",
                    "AttributeValue for the lookup attribute must not be empty.",
                )
            filt = (key, value)
        start = _epoch(params.get("StartTime"), "StartTime")
        end = _epoch(params.get("EndTime"), "EndTime")
        if start is not None and end is not None and start > end:
            raise AWSError("InvalidTimeRangeException", "Start time must be earlier than end time.")
        if params.get("EventCategory") not in (None, "insight"):
            raise AWSError("InvalidEventCategoryException", "Event category is not valid.")
        max_results = params.get("MaxResults", 50)
        if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= 50:
            raise AWSError("InvalidMaxResultsException", "MaxResults must be between 1 and 50.")
        if params.get("EventCategory") == "insight":
            return {"Events": []}

        lines = self._lines(caller.account, caller.region)
        fingerprint = _fingerprint(filt, start, end)
        # Newest first: position counts from the newest event at the time of the first page. The token also
        # carries the total seen then, so events appended between pages do not shift later pages.
        total = len(lines)
        skip = 0
        token = params.get("NextToken")
        if token:
            total, skip = _decode_token(token, fingerprint)
            total = min(total, len(lines))
        out: list[dict] = []
        index = total - 1 - skip
        scanned = skip
        while index >= 0 and len(out) < max_results:
            line = lines[index]
            index -= 1
            scanned += 1
            event = orjson.loads(line)
            when = _parse_time(event["eventTime"])
            if start is not None and when < start:
                continue
            if end is not None and when > end:
                continue
            if filt is not None and not _matches(event, *filt):
                continue
            out.append(_summary(event, line))
        response: dict = {"Events": out}
        if index >= 0 and len(out) == max_results:
            response["NextToken"] = _encode_token(total, scanned, fingerprint)
        return response


def _epoch(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise AWSError("SerializationException", f"Invalid value for {name}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            try:
                return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                pass
    raise AWSError("SerializationException", f"Invalid value for {name}")


def _fingerprint(filt: tuple[str, str] | None, start: float | None, end: float | None) -> str:
    return hashlib.sha256(orjson.dumps([filt, start, end])).hexdigest()[:16]


def _encode_token(total: int, skip: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([total, skip, fingerprint])).decode()


def _decode_token(token: object, fingerprint: str) -> tuple[int, int]:
    try:
        total, skip, fp = orjson.loads(base64.urlsafe_b64decode(str(token).encode()))
        if fp != fingerprint or not isinstance(total, int) or not isinstance(skip, int) or skip < 0:
            raise ValueError
        return total, skip
    except Exception:
        raise AWSError("InvalidNextTokenException", "Invalid NextToken.") from None
