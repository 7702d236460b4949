"""The one error type every layer raises; the server turns it into an AWS JSON error body."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager


class AWSError(Exception):
    """An error the client sees as ``{"__type": ..., "message": ...}`` with an HTTP status.

    ``code`` is the short AWS error code (e.g. ``ValidationException``). ``type_prefix``
    overrides the namespace the server would otherwise pick for the service, for the few
    errors AWS reports from its front end (e.g. ``com.amazon.coral.service#``).
    ``extra`` adds members to the body (e.g. ``CancellationReasons``, ``Item``).
    """

    def __init__(
        self,
        code: str,
        message: str | None = "",
        status: int = 400,
        *,
        type_prefix: str | None = None,
        extra: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.type_prefix = type_prefix
        self.extra = extra

    def __repr__(self) -> str:
        return f"AWSError({self.code!r}, {self.message!r}, {self.status})"


def validation(message: str) -> AWSError:
    return AWSError("ValidationException", message)


def internal(message: str = "Internal server error") -> AWSError:
    return AWSError("InternalServerError", message, 500)


class IntegrityError(Exception):
    """A sealed blob failed authentication: tampered, moved or from another table. Never shown as data."""


class StartupError(Exception):
    """The server must not start: the message is one line saying what is wrong, where, and what to do.

    ``dynavault serve`` / ``verify`` print it to stderr (no traceback) and exit with status 2."""


class MustBlock(Exception):  # noqa: N818 - a signal to the server, not a failure
    """Raised on the event loop by a request that is about to wait on a remote service (a remote KMS, on a
    key-cache miss) before it has changed anything: the server runs the request again in a thread, so the
    loop keeps serving every other request meanwhile."""


_MAY_DEFER: contextvars.ContextVar[bool] = contextvars.ContextVar("dynavault_may_defer", default=False)


def defer_if_possible() -> None:
    """Raise MustBlock if the running request may still move off the event loop."""
    if _MAY_DEFER.get():
        raise MustBlock()


@contextmanager
def deferrable() -> Iterator[None]:
    """Around a handler run on the event loop that has not changed anything when it first calls out."""
    token = _MAY_DEFER.set(True)
    try:
        yield
    finally:
        _MAY_DEFER.reset(token)
