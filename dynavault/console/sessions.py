"""Console sessions: who is signed in, held by an object the runtime owns (never a module global).

A session is found by a random cookie token; only the token's SHA-256 is kept, so a memory dump does not
hand out live cookies. Each session carries its own CSRF token, required on every form post. Sessions are
short-lived: idle ones end after ``idle_seconds``, every one after ``max_seconds``. The secret key a user
signed in with is checked once and never kept.

With several worker processes a browser's next request may reach any of them, so the runtime hands the
store rows (``SessionRows``: the table store under a prefix of its own) and every session is a row there.
A row is sealed (AES-256-GCM) under a key derived from the cookie token itself: the store, a copy of the
data dir or another worker without the cookie learns nothing but when a session started and ends (a
plaintext header, for pruning). Without rows (one process, unit tests) sessions live in this object.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: sessions kept at most; signing in past it drops the oldest (a flood of sign-ins cannot grow memory)
MAX_SESSIONS = 10_000
#: a stored row: when the session started and when it ends at the latest (for pruning), then nonce ‖ AEAD
_HEADER = struct.Struct("<dd")
_SEAL_INFO = b"dynavault console session v1"


@dataclass(slots=True)
class Session:
    account: str
    principal_arn: str
    access_key: str
    region: str
    csrf: str
    created: float
    last_seen: float
    #: one short message shown on the next page (the outcome of a form post)
    flash: list[tuple[str, str]] = field(default_factory=list)
    #: seals the item keys this session puts in URLs (format.key_token)
    url_key: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    def __repr__(self) -> str:  # never show the CSRF token or the URL key
        return f"Session({self.principal_arn!r}, region={self.region!r})"

    def check_csrf(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.csrf.encode())

    def _state(self) -> dict:
        return {"a": self.account, "p": self.principal_arn, "k": self.access_key, "r": self.region,
                "c": self.csrf, "t0": self.created, "t": self.last_seen, "f": [list(f) for f in self.flash],
                "u": self.url_key.hex()}

    @classmethod
    def _from_state(cls, d: dict) -> Session:
        return cls(d["a"], d["p"], d["k"], d["r"], d["c"], d["t0"], d["t"], [tuple(f) for f in d["f"]],
                   bytes.fromhex(d["u"]))


class SessionRows(Protocol):
    """Where shared sessions are kept (the runtime's adapter over the table store)."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self) -> list[tuple[bytes, bytes]]: ...


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _aead(token: str) -> AESGCM:
    return AESGCM(HKDF(hashes.SHA256(), 32, None, _SEAL_INFO).derive(token.encode()))


class SessionStore:
    def __init__(self, *, idle_seconds: float = 900.0, max_seconds: float = 8 * 3600.0,
                 max_sessions: int = MAX_SESSIONS, clock: Callable[[], float] = time.time,
                 rows: SessionRows | None = None) -> None:
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self.max_seconds = max_seconds
        self._clock = clock
        self._rows = rows
        self._sessions: dict[bytes, Session] = {}
        self._lock = threading.Lock()

    def create(self, account: str, principal_arn: str, access_key: str, region: str) -> tuple[str, Session]:
        """A new session -> (cookie token, session)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(account, principal_arn, access_key, region, secrets.token_urlsafe(32), now, now)
        if self._rows is not None:
            self._make_room(now)
            self.save(token, session)
            return token, session
        with self._lock:
            self._purge(now)
            while len(self._sessions) >= self.max_sessions:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[_digest(token)] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        now = self._clock()
        if self._rows is not None:
            return self._load(token, now)
        with self._lock:
            session = self._sessions.get(_digest(token))
            if session is None:
                return None
            if self._over(session, now):
                del self._sessions[_digest(token)]
                return None
            session.last_seen = now
            return session

    def save(self, token: str, session: Session) -> None:
        """Keep what a request changed in ``session`` (its region, its flash message) for the next request,
        whichever worker serves it (nothing to do without rows: the session is the stored one)."""
        if self._rows is None:
            return
        header = _HEADER.pack(session.created, self._ends(session))
        nonce = os.urandom(12)
        key = _digest(token)
        sealed = _aead(token).encrypt(nonce, orjson.dumps(session._state()), key + header)
        self._rows.put(key, header + nonce + sealed)

    def end(self, token: str | None) -> None:
        if not token:
            return
        if self._rows is not None:
            self._rows.delete(_digest(token))
            return
        with self._lock:
            self._sessions.pop(_digest(token), None)

    def __len__(self) -> int:
        if self._rows is not None:
            return len(self._rows.scan())
        return len(self._sessions)

    def prune(self) -> int:
        """Drop the rows of sessions that have ended (a periodic job); -> how many."""
        if self._rows is None:
            with self._lock:
                before = len(self._sessions)
                self._purge(self._clock())
                return before - len(self._sessions)
        now = self._clock()
        ended = [k for k, raw in self._rows.scan() if _HEADER.unpack_from(raw)[1] <= now]
        for k in ended:
            self._rows.delete(k)
        return len(ended)

    def _ends(self, session: Session) -> float:
        return min(session.last_seen + self.idle_seconds, session.created + self.max_seconds)

    def _over(self, session: Session, now: float) -> bool:
        return now - session.last_seen > self.idle_seconds or now - session.created > self.max_seconds

    def _load(self, token: str, now: float) -> Session | None:
        key = _digest(token)
        raw = self._rows.get(key)
        if raw is None or len(raw) < _HEADER.size + 12 + 16:
            return None
        header = raw[:_HEADER.size]
        try:
            state = _aead(token).decrypt(raw[_HEADER.size:_HEADER.size + 12], raw[_HEADER.size + 12:], key + header)
            session = Session._from_state(orjson.loads(state))
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None  # not sealed under this cookie: no session
        if self._over(session, now):
            self._rows.delete(key)
            return None
        # The idle clock is kept in the row; written again once it moved by a tenth of the idle time, so a
        # page's requests do not each write it.
        moved = now - session.last_seen > self.idle_seconds / 10
        session.last_seen = now
        if moved:
            self.save(token, session)
        return session

    def _make_room(self, now: float) -> None:
        rows = [(k, _HEADER.unpack_from(raw)) for k, raw in self._rows.scan()]
        live = sorted((created, k) for k, (created, ends) in rows if ends > now)
        for k, (_, ends) in rows:
            if ends <= now:
                self._rows.delete(k)
        for _, k in live[:max(0, len(live) - self.max_sessions + 1)]:
            self._rows.delete(k)

    def _purge(self, now: float) -> None:
        expired = [k for k, s in self._sessions.items() if self._over(s, now)]
        for k in expired:
            del self._sessions[k]
