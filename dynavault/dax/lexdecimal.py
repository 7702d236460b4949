"""DAX's order-preserving number encoding for numeric sort keys inside key bytes ("LexDecimal").

Bytewise order of the encodings is numeric order. Layout: one header byte holding the sign and the decimal
exponent E (the number is 0.d1d2d3... x 10^E; a 5-byte form for |E| >= 62), then the significand in base 1000,
10 bits per group (group g as g + 12, or 1011 - g for negatives), closed by a terminator group that says how
many digits the last group holds (0, 1, 2: one, two, three; 1023 - t for negatives), packed big-endian.
Zero is the single byte 0x80.
"""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

_ZERO = b"\x80"
#: the longest significand DynamoDB allows is 38 digits: 13 groups and a terminator, 18 bytes; with a header of
#: at most 5 bytes nothing valid is longer than this
MAX_ENCODED = 32
#: wider than any DynamoDB number (38 digits), so normalising never rounds
_EXACT = Context(prec=80, Emax=999999, Emin=-999999)


def encode(number: str | Decimal) -> bytes:
    """The encoding of a DynamoDB number (its canonical text or a Decimal)."""
    value = number if isinstance(number, Decimal) else Decimal(number)
    if value.is_zero():
        return _ZERO
    sign, digits, exponent = value.normalize(_EXACT).as_tuple()  # trailing zeros would change the bytes
    text = "".join(map(str, digits))
    e = len(text) + exponent
    out = bytearray()
    if not sign:
        if -0x3E <= e < 0x3E:
            out.append(e + 0xC0)
        else:
            out.append(0x81 if e < 0 else 0xFE)
            out += ((e & 0xFFFFFFFF) ^ 0x80000000).to_bytes(4, "big")
    else:
        if -0x3E <= e < 0x3E:
            out.append(0x3F - e)
        else:
            out.append(0x7E if e < 0 else 0x01)
            out += ((e & 0xFFFFFFFF) ^ 0x7FFFFFFF).to_bytes(4, "big")
    rest = len(text) % 3
    terminator = {1: 0, 2: 1, 0: 2}[rest]
    text += "0" * ((3 - rest) % 3)
    groups = [int(text[i:i + 3]) for i in range(0, len(text), 3)]
    if sign:
        codes = [1011 - g for g in groups] + [1023 - terminator]
    else:
        codes = [g + 12 for g in groups] + [terminator]
    accum = bits = 0
    for code in codes:
        accum = (accum << 10) | code
        bits += 10
        while bits >= 8:
            bits -= 8
            out.append((accum >> bits) & 0xFF)
        accum &= (1 << bits) - 1
    if bits:
        out.append((accum << (8 - bits)) & 0xFF)
    return bytes(out)


def decode(data: bytes) -> str:
    """The number ``data`` encodes, as DynamoDB number text. ValueError for bytes no encoder makes."""
    if not data or len(data) > MAX_ENCODED:
        raise ValueError("bad number encoding")
    head = data[0]
    if head in (0x80, 0x7F):
        if len(data) != 1:
            raise ValueError("bad number encoding")
        return "0"
    pos = 1
    if head in (0x01, 0x7E, 0x81, 0xFE):
        if len(data) < 5:
            raise ValueError("bad number encoding")
        raw = int.from_bytes(data[1:5], "big") ^ (0x7FFFFFFF if head in (0x01, 0x7E) else 0x80000000)
        e = raw - (1 << 32) if raw & 0x80000000 else raw
        negative = head in (0x01, 0x7E)
        pos = 5
    elif head >= 0x82:
        negative, e = False, head - 0xC0
    else:
        negative, e = True, 0x3F - head
    digits: list[str] = []
    accum = bits = 0
    for byte in data[pos:]:
        accum = (accum << 8) | byte
        bits += 8
        if bits < 10:
            continue
        bits -= 10
        code = (accum >> bits) & 0x3FF
        accum &= (1 << bits) - 1
        if negative:
            code = 1023 - code
        if code <= 2:
            if not digits:
                raise ValueError("bad number encoding")
            keep = code + 1  # digits of the last group that count
            if keep < 3:
                digits[-1] = digits[-1][:keep]
            text = "".join(digits)
            try:
                value = Decimal(f"{'-' if negative else ''}0.{text}E{e}")
            except InvalidOperation:
                raise ValueError("bad number encoding") from None
            return _plain(value)
        group = code - 12
        if not 0 <= group <= 999:
            raise ValueError("bad number encoding")
        digits.append(f"{group:03d}")
    raise ValueError("bad number encoding")


def _plain(value: Decimal) -> str:
    """A Decimal as DynamoDB writes a number: no exponent, no trailing zeros after the point."""
    return format(value.normalize(_EXACT), "f")
