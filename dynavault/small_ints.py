"""Whole numbers a client sends as text (page tokens, header values, query parameters, list indexes).

`str.isdigit()` accepts digits int() refuses ('²', other scripts) and int() refuses text over 4,300 digits
with a ValueError; either would reach the client as a 500. Everything client-given goes through here.
"""

from __future__ import annotations


def small_int(text: object, max_digits: int = 18) -> int | None:
    """`text` as a non-negative int when it is 1..max_digits ASCII digits, else None."""
    if not isinstance(text, str) or not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)
