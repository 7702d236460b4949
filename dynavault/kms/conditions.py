"""IAM condition operators as KMS key policies use them.

Families: String*, Numeric*, Date*, Bool, Binary, IpAddress/NotIpAddress, Arn*, Null; the ``IfExists`` suffix
and the ``ForAllValues:`` / ``ForAnyValue:`` prefixes. ``parse_operator`` refuses anything else, so a policy
with an operator we cannot evaluate is refused when it is set (a Deny we silently skipped would allow).
Semantics follow the IAM reference: a missing key fails a positive operator and passes a negated one;
``IfExists`` passes on a missing key; ``ForAllValues`` is vacuously true, ``ForAnyValue`` false, on no values.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

Matcher = Callable[[str, str], bool]


class ConditionError(ValueError):
    """A condition block that cannot be evaluated (unknown operator, value of the wrong kind)."""


def like(pattern: str, value: str) -> bool:
    """IAM wildcards, case-sensitive: ``*`` any run, ``?`` one character, the rest literal.

    Greedy matching that backs up only to the last ``*``: at most len(pattern) x len(value) steps for any
    pattern a policy author writes (a regular expression could backtrack far longer), and nothing to cache."""
    if "*" not in pattern and "?" not in pattern:
        return pattern == value
    p = v = 0
    star = -1  # position in the pattern just after the last *, and where in the value it started
    mark = 0
    np, nv = len(pattern), len(value)
    while v < nv:
        if p < np and (pattern[p] == "?" or pattern[p] == value[v]) and pattern[p] != "*":
            p += 1
            v += 1
        elif p < np and pattern[p] == "*":
            star, mark = p + 1, v
            p += 1
        elif star >= 0:
            mark += 1
            p, v = star, mark
        else:
            return False
    while p < np and pattern[p] == "*":
        p += 1
    return p == np


def _number(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _date(text: str) -> float | None:
    text = text.strip()
    if re.fullmatch(r"-?\d{1,12}(\.\d+)?", text):  # epoch seconds
        return float(text)
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed.timestamp()


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def _arn_like(pattern: str, value: str) -> bool:
    # ARNs compare component by component (arn:partition:service:region:account:resource), each with wildcards
    p = pattern.split(":", 5)
    v = value.split(":", 5)
    return len(p) == 6 and len(v) == 6 and all(like(a, b) for a, b in zip(p, v, strict=True))


def _compare(convert: Callable[[str], object], op: str) -> Matcher:
    def match(expected: str, value: str) -> bool:
        e, v = convert(expected), convert(value)
        if e is None or v is None:
            return False
        if op == "eq":
            return v == e
        if op == "lt":
            return v < e
        if op == "le":
            return v <= e
        if op == "gt":
            return v > e
        return v >= e

    return match


def _in_network(expected: str, value: str) -> bool:
    net = _network(expected)
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return net is not None and addr.version == net.version and addr in net


#: base operator -> (matcher, negated, validator of the policy's values)
_OPS: dict[str, tuple[Matcher, bool, Callable[[str], object] | None]] = {
    "StringEquals": (lambda e, v: v == e, False, None),
    "StringNotEquals": (lambda e, v: v == e, True, None),
    "StringEqualsIgnoreCase": (lambda e, v: v.casefold() == e.casefold(), False, None),
    "StringNotEqualsIgnoreCase": (lambda e, v: v.casefold() == e.casefold(), True, None),
    "StringLike": (like, False, None),
    "StringNotLike": (like, True, None),
    "NumericEquals": (_compare(_number, "eq"), False, _number),
    "NumericNotEquals": (_compare(_number, "eq"), True, _number),
    "NumericLessThan": (_compare(_number, "lt"), False, _number),
    "NumericLessThanEquals": (_compare(_number, "le"), False, _number),
    "NumericGreaterThan": (_compare(_number, "gt"), False, _number),
    "NumericGreaterThanEquals": (_compare(_number, "ge"), False, _number),
    "DateEquals": (_compare(_date, "eq"), False, _date),
    "DateNotEquals": (_compare(_date, "eq"), True, _date),
    "DateLessThan": (_compare(_date, "lt"), False, _date),
    "DateLessThanEquals": (_compare(_date, "le"), False, _date),
    "DateGreaterThan": (_compare(_date, "gt"), False, _date),
    "DateGreaterThanEquals": (_compare(_date, "ge"), False, _date),
    "Bool": (lambda e, v: v.lower() == e.lower(), False,
             lambda e: e.lower() if e.lower() in ("true", "false") else None),
    "BinaryEquals": (lambda e, v: v == e, False, None),
    "IpAddress": (_in_network, False, _network),
    "NotIpAddress": (_in_network, True, _network),
    "ArnEquals": (_arn_like, False, None),
    "ArnNotEquals": (_arn_like, True, None),
    "ArnLike": (_arn_like, False, None),
    "ArnNotLike": (_arn_like, True, None),
    "Null": (lambda e, v: False, False, lambda e: e.lower() if e.lower() in ("true", "false") else None),
}


@dataclass(frozen=True, slots=True)
class Operator:
    base: str
    quantifier: str  # "" | "forallvalues" | "foranyvalue"
    if_exists: bool


def parse_operator(text: str) -> Operator:
    """``ForAnyValue:StringLikeIfExists`` -> Operator; raises ConditionError for anything IAM does not define."""
    quantifier = ""
    op = text
    if ":" in op:
        prefix, op = op.split(":", 1)
        quantifier = prefix.lower()
        if quantifier not in ("forallvalues", "foranyvalue"):
            raise ConditionError(text)
    if_exists = op.endswith("IfExists")
    if if_exists:
        op = op[: -len("IfExists")]
    if op not in _OPS or (op == "Null" and (if_exists or quantifier)):
        raise ConditionError(text)
    return Operator(op, quantifier, if_exists)


def expected_values(value: object) -> list[str]:
    """A condition's values as strings (JSON booleans and numbers as IAM reads them)."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str | int | float):
            out.append(str(item))
        else:
            raise ConditionError("condition values must be strings, numbers or booleans")
    return out


def validate_block(block: object) -> set[str]:
    """Check one statement's Condition element; return the (lower-case) condition keys it uses."""
    if not isinstance(block, dict):
        raise ConditionError("Condition must be an object")
    keys: set[str] = set()
    for operator, pairs in block.items():
        op = parse_operator(operator)
        if not isinstance(pairs, dict) or not pairs:
            raise ConditionError(operator)
        check = _OPS[op.base][2]
        for key, value in pairs.items():
            values = expected_values(value)
            if not values:
                raise ConditionError(key)
            if check is not None and any(check(v) is None for v in values):
                raise ConditionError(f"{operator} {key}")
            keys.add(key.lower())
    return keys


def holds(operator: str, key: str, expected: object, context: dict[str, list[str]]) -> bool:
    """Whether ``{operator: {key: expected}}`` holds for the request context (keys lower-case)."""
    op = parse_operator(operator)
    wanted = expected_values(expected)
    values = context.get(key.lower()) or None
    if op.base == "Null":
        return ("true" if values is None else "false") in (w.lower() for w in wanted)
    matcher, negated, _ = _OPS[op.base]
    if values is None:
        if op.if_exists or op.quantifier == "forallvalues":
            return True
        if op.quantifier == "foranyvalue":
            return False
        return negated

    def match(value: str) -> bool:
        return any(matcher(w, value) for w in wanted)

    if op.quantifier == "forallvalues":
        return all(match(v) != negated for v in values)
    if op.quantifier == "foranyvalue":
        return any(match(v) != negated for v in values)
    return any(match(v) for v in values) != negated
