"""DynamoDB's number rules in one place: the grammar, the range and precision limits, their error texts,
and the canonical text form.

A number is decided on its string before any conversion: ``Decimal()`` refuses huge exponents and ``int()``
refuses long digit strings (the interpreter's limit), and either would turn a hostile number into a 500.
:func:`number_parts` is the one parser; attribute-value validation (``values``) and the order-preserving key
encoding (``keyorder``) both build on it, so they can never disagree about which numbers exist.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal

from dynavault.errors import validation

__all__ = [
    "ARITH_CTX",
    "EXACT_CTX",
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "MIN_EXPONENT",
    "MSG_DIGITS",
    "MSG_NOT_NUMERIC",
    "MSG_OVERFLOW",
    "MSG_UNDERFLOW",
    "format_number",
    "format_parts",
    "normalize_number",
    "number_parts",
    "to_decimal",
]

MAX_DIGITS = 38
MAX_EXPONENT = 125  # largest magnitude 9.99..E+125
MIN_EXPONENT = -130  # smallest magnitude 1E-130

# Wide enough that no valid DynamoDB number (38 digits, exponent +-130) is ever rounded while we compute.
EXACT_CTX = decimal.Context(prec=200, Emax=999999, Emin=-999999, traps=[decimal.InvalidOperation])
# Arithmetic in update expressions is done at DynamoDB's precision.
ARITH_CTX = decimal.Context(prec=MAX_DIGITS, Emax=999999, Emin=-999999, rounding=decimal.ROUND_HALF_EVEN)

# Unambiguous (no two adjacent digit runs), so a failed match on a long digit string never backtracks.
# Groups: sign, integer digits, fraction digits after them, fraction digits with no integer part, exponent.
_NUMBER_RE = re.compile(r"([+-]?)(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?")

MSG_NOT_NUMERIC = "The parameter cannot be converted to a numeric value"
MSG_OVERFLOW = "Number overflow. Attempting to store a number with magnitude larger than supported range"
MSG_UNDERFLOW = "Number underflow. Attempting to store a number with magnitude smaller than supported range"
MSG_DIGITS = "Attempting to store more than 38 significant digits in a Number"


def number_parts(text: str) -> tuple[int, str, int]:
    """Validate a DynamoDB number string; return ``(sign, digits, E)`` with ``|n| = 0.digits × 10^E``.

    ``digits`` are the significant digits without leading or trailing zeros (so "1", "1.0" and "10E-1" give
    the same parts); zero is ``(0, "", 0)``. Raises DynamoDB's ValidationException texts, checked in
    DynamoDB's order: not numeric, overflow, underflow, too many digits."""
    if not isinstance(text, str):
        raise TypeError(f"N values are str, not {type(text).__name__}")
    stripped = text.strip()
    if not stripped.isascii():
        # The grammar's \d admits every Unicode decimal digit, as Decimal() does: read them as the ASCII
        # digits they stand for, so "٠" is a leading zero here exactly as it is to Decimal.
        stripped = "".join(str(int(c)) if c.isdecimal() and not c.isascii() else c for c in stripped)
    m = _NUMBER_RE.fullmatch(stripped)
    if m is None:
        raise validation(f"{MSG_NOT_NUMERIC}: {text}" if text else MSG_NOT_NUMERIC)
    sign, int_digits, frac, bare_frac, exp_text = m.groups()
    if int_digits is None:
        int_digits, frac = "", bare_frac
    elif frac is None:
        frac = ""
    digits = int_digits + frac
    significant = digits.lstrip("0")
    if not significant:
        return 0, "", 0
    exp = 0
    if exp_text:
        exp_digits = exp_text.lstrip("+-").lstrip("0")
        # Past 9 digits the exponent is out of every range: saturate instead of converting it.
        exp = 10**10 if len(exp_digits) > 9 else int(exp_digits or "0")
        if exp_text[0] == "-":
            exp = -exp
    # The first significant digit sits at 10^(E-1); leading zeros move it right of the integer part.
    e = len(int_digits) - (len(digits) - len(significant)) + exp
    if e - 1 > MAX_EXPONENT:
        raise validation(MSG_OVERFLOW)
    if e - 1 < MIN_EXPONENT:
        raise validation(MSG_UNDERFLOW)
    significant = significant.rstrip("0")
    if len(significant) > MAX_DIGITS:
        raise validation(MSG_DIGITS)
    return (-1 if sign == "-" else 1), significant, e


def format_parts(sign: int, digits: str, e: int) -> str:
    """Canonical text of ``sign × 0.digits × 10^e`` (the inverse of :func:`number_parts`)."""
    if sign == 0:
        return "0"
    if e <= 0:
        out = "0." + "0" * (-e) + digits
    elif e >= len(digits):
        out = digits + "0" * (e - len(digits))
    else:
        out = digits[:e] + "." + digits[e:]
    return "-" + out if sign < 0 else out


def format_number(num: Decimal) -> str:
    """Plain (never exponent) notation without trailing zeros, as DynamoDB returns numbers."""
    if num.is_zero():
        return "0"
    return format(num.normalize(EXACT_CTX), "f")


def to_decimal(text: str) -> Decimal:
    """The Decimal of a valid number string.

    A zero is valid with any exponent ("0E+999999999999999999999" is in range: it is zero), but Decimal()
    refuses exponents past about 10^18; such a zero is just Decimal(0). Every nonzero valid number has an
    exponent inside the range, so this never raises for what :func:`number_parts` accepted."""
    try:
        return Decimal(text.strip())
    except decimal.InvalidOperation:
        if number_parts(text)[0] == 0:
            return Decimal(0)
        raise


def normalize_number(text: str) -> str:
    """Canonical DynamoDB form of a valid number string: "1.50" -> "1.5", "1E+2" -> "100", "-0" -> "0".

    The same text as ``format_parts(*number_parts(text))``; Decimal's C formatting is just faster, and this
    runs for every number of every item written."""
    return format_number(to_decimal(text))
