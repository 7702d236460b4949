"""CloudTrail-shaped audit trail: JSON lines per (account, region), rotated by size, read by LookupEvents.

Layout: ``<root>/<account>/<region>/events-<seq>.jsonl``. A line is one event, exactly as CloudTrail's
``CloudTrailEvent`` string carries it. Files are only appended to, so a reader never sees half a rotation.
Directories are 0700 and files 0600: the trail names principals, keys and tables.

A trail that cannot be appended to (full disk, read-only mount) never fails the call being audited: the
event is dropped, counted (``on_write_failure``) and logged at most once a minute. Segments whose last
write is older than the retention are deleted by ``sweep`` (CloudTrail's event history keeps 90 days).
"""

from __future__ import annotations

import base64
import datetime as _dt
import errno
import hashlib
import logging
import os
import pathlib
import re
import stat
import threading
import time
from collections.abc import Callable

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError
from dynavault.timestamps import epoch_seconds

log = logging.getLogger("dynavault.audit")

_SEGMENT = re.compile(r"^events-(\d{6})\.jsonl$")
_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DIR_MODE, _FILE_MODE = 0o700, 0o600
#: at most one "cannot append" warning per this many seconds (a full disk fails every request)
_FAILURE_LOG_SECONDS = 60.0

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


def _regular_file(path: pathlib.Path) -> bool:
    """A plain file, not a symlink to a device or FIFO (reading /dev/zero would never end)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


class _Log:
    """One (account, region) log: the open segment (a raw O_APPEND descriptor) and its size."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        segments = self.segments()
        self.seq = int(_SEGMENT.match(segments[-1].name).group(1)) if segments else 0
        self.fd: int | None = None
        self.size = 0

    def segments(self) -> list[pathlib.Path]:
        return _segments(self.directory)

    def path(self) -> pathlib.Path:
        return self.directory / f"events-{self.seq:06d}.jsonl"

    def _open(self) -> None:
        self.directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)  # a sweep may have emptied it
        fd = os.open(self.path(), os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            info = os.fstat(fd)
            size = info.st_size if stat.S_ISREG(info.st_mode) else 0
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # An earlier append failed half-way (disk full): end the torn line so the next event is whole.
                _write_all(fd, b"\n")
                size += 1
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.size = fd, size

    def append(self, line: bytes, rotate_bytes: int) -> None:
        if self.fd is None:
            self._open()
        # The segment's real size, not a count of our own lines: with several workers every one appends to
        # the same segment, and each must see when it is full (then all move on to the same next one).
        self.size = os.fstat(self.fd).st_size
        while self.size and self.size + len(line) > rotate_bytes:
            self.close()
            self.seq += 1
            self._open()
        # One write per event, no user-space buffer: readers (LookupEvents, other processes) see it at once,
        # and a failed write leaves nothing queued to be written later.
        try:
            _write_all(self.fd, line)
        except OSError:
            self.close()  # reopened (and a torn line ended) on the next append
            raise
        self.size += len(line)

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def _segments(directory: pathlib.Path) -> list[pathlib.Path]:
    """One (account, region) log's segment files, oldest first."""
    return sorted(p for p in directory.iterdir() if _SEGMENT.match(p.name))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write to the audit trail")
        view = view[n:]


class AuditTrail:
    def __init__(
        self,
        root: pathlib.Path,
        rotate_bytes: int = 16 << 20,
        *,
        retention_seconds: float | None = None,
        on_write_failure: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = pathlib.Path(root)
        self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        self.rotate_bytes = max(1, int(rotate_bytes))
        #: events older than this are deleted by ``sweep`` and never returned by LookupEvents (None: forever)
        self.retention_seconds = retention_seconds
        self._on_write_failure = on_write_failure
        self._clock = clock
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, str], _Log] = {}
        self.write_failures = 0
        self._failures_unlogged = 0
        self._failure_logged_at: float | None = None

    # -- writing -------------------------------------------------------------------------------------------

    def _log(self, account: str, region: str) -> _Log:
        log_ = self._logs.get((account, region))
        if log_ is None:
            if not _SAFE.match(account) or not _SAFE.match(region):
                raise ValueError("bad account or region for the audit trail")
            log_ = _Log(self.root / account / region)
            self._logs[(account, region)] = log_
        return log_

    def record(self, event: dict) -> None:
        """Append one event to the log of its ``recipientAccountId`` and ``awsRegion``.

        Never raises for a trail that cannot be written: the audited call goes on (a full disk must not stop
        reads); the failure is counted and logged instead."""
        line = orjson.dumps(event) + b"\n"
        with self._lock:
            log_: _Log | None = None
            try:
                log_ = self._log(event["recipientAccountId"], event["awsRegion"])
                log_.append(line, self.rotate_bytes)
            except (OSError, ValueError) as err:
                self._failed(err, log_.directory if log_ is not None else self.root)
            else:
                if self._failure_logged_at is not None:
                    log.warning("audit trail: appending works again (%d events were dropped)", self.write_failures)
                    self._failure_logged_at = None
                    self._failures_unlogged = 0

    def _failed(self, err: Exception, where: pathlib.Path) -> None:
        self.write_failures += 1
        if self._on_write_failure is not None:
            self._on_write_failure()
        now = self._clock()
        if self._failure_logged_at is None or now - self._failure_logged_at >= _FAILURE_LOG_SECONDS:
            log.error("audit trail: cannot append an event in %s, it is dropped (%s); %d dropped so far, %d since "
                      "the last report; requests are still served", where, err, self.write_failures,
                      self._failures_unlogged + 1)
            self._failure_logged_at = now
            self._failures_unlogged = 0
        else:
            self._failures_unlogged += 1

    def sweep(self) -> int:
        """Delete segments whose newest event is older than the retention; return how many were deleted."""
        if self.retention_seconds is None:
            return 0
        cutoff = self._clock() - self.retention_seconds
        deleted = 0
        with self._lock:
            for account_dir in _subdirs(self.root):
                for region_dir in _subdirs(account_dir):
                    open_log = self._logs.get((account_dir.name, region_dir.name))
                    for path in _segments(region_dir):
                        try:
                            if path.lstat().st_mtime >= cutoff:
                                continue
                            if open_log is not None and path == open_log.path():
                                open_log.close()  # the next event starts a new segment
                                open_log.seq += 1
                            path.unlink()
                        except FileNotFoundError:
                            continue
                        except OSError as err:
                            log.warning("audit retention: cannot delete %s: %s", path, err)
                            continue
                        deleted += 1
        if deleted:
            log.info("audit retention: deleted %d segment(s) older than %.6g days", deleted,
                     self.retention_seconds / 86400)
        return deleted

    def close(self) -> None:
        with self._lock:
            for log_ in self._logs.values():
                log_.close()

    # -- reading -------------------------------------------------------------------------------------------

    def _lines(self, account: str, region: str) -> list[bytes]:
        if not _SAFE.match(account) or not _SAFE.match(region):
            return []
        directory = self.root / account / region
        if not directory.is_dir():
            return []
        with self._lock:
            paths = _segments(directory)
            lines: list[bytes] = []
            for path in paths:
                if not _regular_file(path):
                    continue
                try:
                    with open(path, "rb") as fh:
                        lines.extend(ln for ln in fh.read().split(b"\n") if ln)
                except FileNotFoundError:  # deleted by retention meanwhile
                    continue
        return lines

    def events(self, account: str, region: str) -> list[dict]:
        """All events of (account, region), oldest first."""
        return [e for e in map(_parse_line, self._lines(account, region)) if e is not None]

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
        # Past the retention an event is gone, even before the sweep deletes the segment holding it.
        oldest = None if self.retention_seconds is None else self._clock() - self.retention_seconds
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
            event = _parse_line(line)
            if event is None:
                continue
            when = _parse_time(event["eventTime"])
            if start is not None and when < start:
                continue
            if oldest is not None and when < oldest:
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


def _subdirs(directory: pathlib.Path) -> list[pathlib.Path]:
    try:
        return [p for p in directory.iterdir() if _SAFE.match(p.name) and p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _parse_line(line: bytes) -> dict | None:
    """One stored event; None for a line torn by a failed append (disk full), which is skipped."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("eventTime"), str) else None


def _epoch(value: object, name: str) -> float | None:
    if value is None:
        return None
    seconds = epoch_seconds(value)
    if seconds is None:
        raise AWSError("SerializationException", f"Invalid value for {name}")
    return seconds


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
