"""How AWS's Java front end orders and prints things in validation messages, imitated for exact texts:
String.hashCode and HashMap iteration order (which member's violation is listed first), UTF-16 lengths, the
Java-only regex constructs of botocore's models, and Java's number and object rendering."""

from __future__ import annotations

import re
import zlib
from typing import Any


def java_hash(s: str) -> int:
    """java.lang.String.hashCode (over UTF-16 code units), unsigned 32-bit."""
    h = 0
    if s.isascii():
        for ch in s:
            h = (31 * h + ord(ch)) & 0xFFFFFFFF
        return h
    units = s.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + ((units[i] << 8) | units[i + 1])) & 0xFFFFFFFF
    return h


def hashmap_capacity(n: int) -> int:
    cap = 16
    while n > cap * 3 // 4:
        cap *= 2
    return cap


def hashmap_order(names: list[str], later_first: bool = False) -> dict[str, int]:
    """Rank of each name in a default-constructed java.util.HashMap's iteration (Java 8+).

    Names sharing a bucket keep insertion order; for model members the recorded answers
    (Scan: ``limit`` before ``attributesToGet``; Query: ``returnConsumedCapacity`` before
    ``queryFilter``) show later model members first, so ``later_first`` flips the tie-break.
    """
    mask = hashmap_capacity(len(names)) - 1
    sign = -1 if later_first else 1

    def bucket(s: str) -> int:
        h = java_hash(s)
        return (h ^ (h >> 16)) & mask

    ordered = sorted(range(len(names)), key=lambda i: (bucket(names[i]), sign * i))
    return {names[i]: rank for rank, i in enumerate(ordered)}


def enum_order(values: list[str]) -> list[str]:
    cap = 32
    while len(values) > cap * 3 // 4:
        cap *= 2
    return sorted(values, key=lambda v: (java_hash(v) & (cap - 1), -values.index(v)))


def utf16_len(s: str) -> int:
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le")) // 2


def java_regex(pattern: str) -> re.Pattern[str] | None:
    """Translate the few Java-only regex constructs the models use; None if still untranslatable."""
    p = pattern.replace(r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF")
    p = p.replace(r"\p{Print}", r"\x20-\x7e" if "[" in p.split(r"\p{Print}")[0] else r"[\x20-\x7e]")
    try:
        return re.compile(p, re.DOTALL)
    except re.error:
        return None


def num_str(v: Any) -> str:
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e7:
            return f"{v:.1f}"
        return repr(v)
    return str(v)


def java_ref(java: str, v: Any) -> str:
    """Object.toString() of a model class: the class name and an identity hash we can only imitate."""
    return f"{java}@{zlib.crc32(repr(v).encode()):x}"
