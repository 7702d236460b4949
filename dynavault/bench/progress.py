"""What ``dynavault bench`` shows while it loads and runs: a progress bar redrawn in place on a terminal, a
line per phase when stderr is a file or pipe, nothing with ``--json`` (scripts read stdout only anyway; the
bar goes to stderr so it never mixes with the results)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO

_WIDTH = 30
_TICK_SECONDS = 0.2


class Progress:
    """``async with progress.phase(label, total, unit, done=...)`` shows ``done()`` of ``total`` while the
    block runs. ``mode``: "bar" (a terminal), "lines" (start and end lines only) or "quiet"."""

    def __init__(self, mode: str, stream: TextIO | None = None) -> None:
        if mode not in ("bar", "lines", "quiet"):
            raise ValueError(mode)
        self.mode = mode
        self.stream = stream if stream is not None else sys.stderr

    @classmethod
    def for_terminal(cls, quiet: bool, stream: TextIO | None = None) -> Progress:
        stream = stream if stream is not None else sys.stderr
        if quiet:
            return cls("quiet", stream)
        return cls("bar" if stream.isatty() else "lines", stream)

    def phase(self, label: str, total: float, unit: str, done: Callable[[], float],
              extra: Callable[[], str] | None = None) -> _Phase:
        return _Phase(self, label, total, unit, done, extra)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not fail the benchmark
            self.mode = "quiet"


def _bar(fraction: float) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * _WIDTH))
    return "#" * filled + "." * (_WIDTH - filled)


def _num(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() or v >= 100 else f"{v:,.1f}"


class _Phase:
    def __init__(self, owner: Progress, label: str, total: float, unit: str, done: Callable[[], float],
                 extra: Callable[[], str] | None) -> None:
        self.owner, self.label, self.total, self.unit = owner, label, total, unit
        self.done, self.extra = done, extra
        self._task: asyncio.Task | None = None
        self._started = 0.0

    def render(self) -> str:
        done = self.done()
        fraction = done / self.total if self.total else 1.0
        extra = f"  {self.extra()}" if self.extra is not None else ""
        return (f"{self.label:<10} [{_bar(fraction)}] {_num(done)}/{_num(self.total)} {self.unit}  "
                f"{time.monotonic() - self._started:5.1f} s{extra}")

    async def _ticker(self) -> None:
        while True:
            self.owner._write("\r" + self.render() + "\x1b[K")
            await asyncio.sleep(_TICK_SECONDS)

    async def __aenter__(self) -> _Phase:
        self._started = time.monotonic()
        mode = self.owner.mode
        if mode == "bar":
            self._task = asyncio.get_running_loop().create_task(self._ticker())
        elif mode == "lines":
            self.owner._write(f"{self.label}: {_num(self.total)} {self.unit} ...\n")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        mode = self.owner.mode
        if mode == "bar":
            self.owner._write("\r" + self.render() + "\x1b[K\n")
        elif mode == "lines":
            extra = f", {self.extra()}" if self.extra is not None else ""
            self.owner._write(f"{self.label}: done in {time.monotonic() - self._started:.1f} s{extra}\n")
