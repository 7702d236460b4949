"""Log records that no input can forge: one record is one line, and nothing in it can fake another.

Messages carry request-derived text (table names, paths, exception texts). Every character that could
start a line, move the cursor or reorder what a reader sees -- C0 and C1 controls, DEL, U+2028/U+2029 and
the bidi overrides/isolates such as U+202E -- is written as a visible escape (``\\n``, ``\\x1b``,
``\\u202e``). Installed for every logger (uvicorn's too) through the log record factory; a traceback
keeps its lines but each continuation line is indented with ``  | `` so it cannot pass for a record.
"""

from __future__ import annotations

import logging

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0x061C, 0x200E, 0x200F,
           *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF]
_TABLE = {cp: _NAMED.get(chr(cp)) or (f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}") for cp in _UNSAFE}
# Tracebacks keep their line structure; everything else in them is escaped as in messages.
_TRACE_TABLE = {cp: text for cp, text in _TABLE.items() if cp != 0x0A}


def escape(text: str) -> str:
    """``text`` with every line-breaking, control and bidi character written as a visible escape."""
    return text.translate(_TABLE) if not text.isprintable() else text


def _escape_block(text: str) -> str:
    lines = text.translate(_TRACE_TABLE).split("\n")
    return "\n".join([lines[0], *("  | " + line for line in lines[1:])])


class _SafeRecord(logging.LogRecord):
    def getMessage(self) -> str:  # noqa: N802 - logging's name
        return escape(super().getMessage())


class SafeFormatter(logging.Formatter):
    """Indents traceback and stack lines, escaping controls in them (exception texts carry input)."""

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return "  | " + _escape_block(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return "  | " + _escape_block(super().formatStack(stack_info))


def install() -> None:
    """Every LogRecord made from now on, by any logger, escapes its message."""
    if logging.getLogRecordFactory() is not _SafeRecord:
        logging.setLogRecordFactory(_SafeRecord)
