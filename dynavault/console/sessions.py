"""Console sessions: who is signed in, held by an object the runtime owns (never a module global).

A session is found by a random cookie token; only the token's SHA-256 is kept, so a memory dump does not
hand out live cookies. Each session carries its own CSRF token, required on every form post. Sessions are
short-lived: idle ones end after ``idle_seconds``, every one after ``max_seconds``. The secret key a user
signed in with is checked once and never kept.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: sessions kept at most; signing in past it drops the oldest (a flood of sign-ins cannot grow memory)
MAX_SESSIONS = 10_000


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


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SessionStore:
    def __init__(self, *, idle_seconds: float = 900.0, max_seconds: float = 8 * 3600.0,
                 max_sessions: int = MAX_SESSIONS, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self.max_seconds = max_seconds
        self._clock = clock
        self._sessions: dict[bytes, Session] = {}
        self._lock = threading.Lock()

    def create(self, account: str, principal_arn: str, access_key: str, region: str) -> tuple[str, Session]:
        """A new session -> (cookie token, session)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(account, principal_arn, access_key, region, secrets.token_urlsafe(32), now, now)
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
        with self._lock:
            session = self._sessions.get(_digest(token))
            if session is None:
                return None
            if now - session.last_seen > self.idle_seconds or now - session.created > self.max_seconds:
                del self._sessions[_digest(token)]
                return None
            session.last_seen = now
            return session

    def end(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._sessions.pop(_digest(token), None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _purge(self, now: float) -> None:
        expired = [k for k, s in self._sessions.items()
                   if now - s.last_seen > self.idle_seconds or now - s.created > self.max_seconds]
        for k in expired:
            del self._sessions[k]
