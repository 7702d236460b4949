"""memcmp-comparable encodings of DynamoDB key values (pure; no crypto).

Each encoded value starts with a type tag and is self-delimiting, so values concatenate into tuples that
still compare element by element under plain bytewise comparison (the FoundationDB tuple-layer idea):

* ``B`` — tag ``0x01``, the bytes with ``00`` escaped as ``00 FF``, then a ``00`` terminator. Bytewise
  order, and a proper prefix sorts first (the terminator ``00`` is below any escaped or plain byte).
* ``S`` — tag ``0x02``, then the UTF-8 bytes escaped the same way. DynamoDB compares strings by their
  UTF-8 bytes, which for valid strings is also code-point order.
* ``N`` — DynamoDB order: numeric, 38 significant digits, magnitude in [1e-130, 1e126). Zero is tag
  ``0x0B``. Otherwise write |n| = 0.d1d2…dk × 10^E (d1 ≠ 0, trailing zeros dropped, so "1", "1.0" and
  "10E-1" encode the same); E+129 is one byte (0..255 exactly covers the range); the digits go in pairs
  as base-100 bytes plus one (1..100) followed by a ``00`` terminator, so a shorter mantissa sorts first.
  Positives use tag ``0x0C``; negatives tag ``0x0A`` and every following byte complemented (255 - b),
  which reverses their order as it must.
"""

from __future__ import annotations

from collections.abc import Sequence

from .numbers import format_parts, number_parts

__all__ = ["encode_key_value", "encode_key_tuple", "decode_key_tuple", "prefix_range"]

TAG_B = 0x01
TAG_S = 0x02
TAG_NNEG = 0x0A
TAG_NZERO = 0x0B
TAG_NPOS = 0x0C

_EXP_BIAS = 129  # E (for 0.d × 10^E) ranges over [-129, 126]
_COMPLEMENT = bytes(range(255, -1, -1))
_NPOS = bytes((TAG_NPOS,))
_NNEG = bytes((TAG_NNEG,))
# A pair of decimal digits as its base-100 byte plus one (1..100; 0 is the terminator).
_PAIR = {f"{i:02d}": i + 1 for i in range(100)}


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00"


def _encode_number(text: str) -> bytes:
    sign, ds, e = number_parts(text)
    if sign == 0:
        return bytes((TAG_NZERO,))
    if len(ds) % 2:
        ds += "0"
    raw = bytes((e + _EXP_BIAS, *[_PAIR[ds[i : i + 2]] for i in range(0, len(ds), 2)], 0))
    if sign > 0:
        return _NPOS + raw
    return _NNEG + raw.translate(_COMPLEMENT)


def encode_key_value(type_: str, value: str | bytes) -> bytes:
    """Encode one key attribute value ("S", "N" or "B"); bytewise order of results == DynamoDB order."""
    if type_ == "S":
        if not isinstance(value, str):
            raise TypeError(f"S values are str, not {type(value).__name__}")
        return bytes((TAG_S,)) + _escape(value.encode("utf-8"))
    if type_ == "N":
        return _encode_number(value)  # type: ignore[arg-type]
    if type_ == "B":
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"B values are bytes, not {type(value).__name__}")
        return bytes((TAG_B,)) + _escape(bytes(value))
    raise ValueError(f"key attribute type must be S, N or B, not {type_!r}")


def encode_key_tuple(parts: Sequence[tuple[str, str | bytes]]) -> bytes:
    """Concatenate encoded values; tuples then compare lexicographically, element by element."""
    return b"".join(encode_key_value(t, v) for t, v in parts)


def _read_escaped(raw: bytes, i: int) -> tuple[bytes, int]:
    out = bytearray()
    n = len(raw)
    while True:
        j = raw.find(b"\x00", i)
        if j < 0:
            raise ValueError("truncated key encoding")
        out += raw[i:j]
        if j + 1 < n and raw[j + 1] == 0xFF:
            out.append(0)
            i = j + 2
        else:
            return bytes(out), j + 1


def _read_number(raw: bytes, i: int, negative: bool) -> tuple[str, int]:
    # The exponent byte may itself be 00/FF, so the terminator search starts after it.
    j = raw.find(b"\xff" if negative else b"\x00", i + 1)
    if j < 0:
        raise ValueError("truncated number encoding")
    body = raw[i:j]
    if negative:
        body = body.translate(_COMPLEMENT)
    e = body[0] - _EXP_BIAS
    pairs = body[1:]
    if not pairs or any(b < 1 or b > 100 for b in pairs):
        raise ValueError("malformed number encoding")
    ds = "".join(f"{b - 1:02d}" for b in pairs).rstrip("0")
    return format_parts(-1 if negative else 1, ds, e), j + 1


def decode_key_tuple(raw: bytes) -> list[tuple[str, str | bytes]]:
    """Inverse of :func:`encode_key_tuple`; numbers come back in canonical form."""
    out: list[tuple[str, str | bytes]] = []
    i, n = 0, len(raw)
    while i < n:
        tag = raw[i]
        i += 1
        if tag == TAG_S:
            b, i = _read_escaped(raw, i)
            out.append(("S", b.decode("utf-8")))
        elif tag == TAG_B:
            b, i = _read_escaped(raw, i)
            out.append(("B", b))
        elif tag == TAG_NZERO:
            out.append(("N", "0"))
        elif tag == TAG_NPOS or tag == TAG_NNEG:
            s, i = _read_number(raw, i, tag == TAG_NNEG)
            out.append(("N", s))
        else:
            raise ValueError(f"unknown key tag {tag:#04x}")
    return out


def prefix_range(type_: str, prefix: str | bytes, head: bytes = b"") -> tuple[bytes, bytes | None]:
    """``(lo, hi)`` with lo inclusive and hi exclusive covering every encoded S/B value that begins with
    ``prefix`` (``begins_with`` on a sort key), after an already-encoded ``head`` of earlier elements."""
    if type_ not in ("S", "B"):
        raise ValueError("begins_with applies to S and B")
    enc = encode_key_value(type_, prefix)[:-1]  # drop the terminator: what every extension starts with
    lo = head + enc
    p = bytearray(lo)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return lo, None
    p[-1] += 1
    return lo, bytes(p)
