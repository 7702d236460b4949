"""Query key conditions: partition-key equality plus at most one sort-key condition."""

from __future__ import annotations

from dynavault.dynamodb.expressions import ast
from dynavault.dynamodb.values import compare, equals, value_type
from dynavault.errors import validation

SORT_OPS = ("=", "<", "<=", ">", ">=", "BETWEEN", "BEGINS_WITH")
_FLIP = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class KeyCondition:
    """``hash_value`` for ``hash_key``; ``sort_op`` (one of SORT_OPS or None) with ``sort_values`` on ``sort_key``."""

    __slots__ = ("hash_key", "hash_value", "sort_key", "sort_op", "sort_values")

    def __init__(
        self,
        hash_key: str,
        hash_value: dict,
        sort_key: str | None = None,
        sort_op: str | None = None,
        sort_values: list | None = None,
    ) -> None:
        self.hash_key = hash_key
        self.hash_value = hash_value
        self.sort_key = sort_key
        self.sort_op = sort_op
        self.sort_values = sort_values or []

    def sort_matches(self, value: dict | None) -> bool:
        """Whether a sort-key value satisfies the sort condition (True when there is none)."""
        op = self.sort_op
        if op is None:
            return True
        if value is None:
            return False
        vals = self.sort_values
        if op == "=":
            return equals(value, vals[0])
        if op == "BEGINS_WITH":
            return ast.BeginsWith(ast.ValueOp(value), ast.ValueOp(vals[0])).eval(None)
        if op == "BETWEEN":
            lo, hi = compare(vals[0], value), compare(value, vals[1])
            return lo is not None and hi is not None and lo <= 0 and hi <= 0
        c = compare(value, vals[0])
        if c is None:
            return False
        return {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]

    def matches(self, item: dict) -> bool:
        return equals(item.get(self.hash_key), self.hash_value) and (
            self.sort_key is None or self.sort_matches(item.get(self.sort_key))
        )

    def __repr__(self) -> str:
        return (
            f"KeyCondition({self.hash_key!r}={self.hash_value!r}, {self.sort_key!r} {self.sort_op} "
            f"{self.sort_values!r})"
        )


def _invalid_operator(name: str):
    return validation(f"Invalid operator used in KeyConditionExpression: {name}")


def _has_size(op: ast.Operand) -> bool:
    return isinstance(op, ast.SizeOp)


def _single(cond: ast.Condition, out: dict) -> None:
    """Add one sort/hash condition to ``out`` (attribute -> (op, values)) or raise DynamoDB's error."""
    if isinstance(cond, ast.Or):
        raise _invalid_operator("OR")
    if isinstance(cond, ast.Not):
        raise _invalid_operator("NOT")
    if isinstance(cond, ast.In):
        raise _invalid_operator("IN")
    if isinstance(cond, ast.Exists):
        raise _invalid_operator("attribute_exists" if cond.positive else "attribute_not_exists")
    if isinstance(cond, ast.AttrType):
        raise _invalid_operator("attribute_type")
    if isinstance(cond, ast.Contains):
        raise _invalid_operator("contains")
    if isinstance(cond, ast.Compare):
        if cond.op == "<>":
            raise _invalid_operator("<>")
        operands = [cond.left, cond.right]
        op = cond.op
        first_must_be_key = None
    elif isinstance(cond, ast.Between):
        operands = [cond.arg, cond.low, cond.high]
        op = "BETWEEN"
        first_must_be_key = "BETWEEN"
    elif isinstance(cond, ast.BeginsWith):
        operands = [cond.arg, cond.prefix]
        op = "BEGINS_WITH"
        first_must_be_key = "begins_with"
    else:
        raise validation("Query key condition not supported")
    if any(_has_size(o) for o in operands):
        raise validation("KeyConditionExpressions cannot contain nested operations")
    paths = [(i, o) for i, o in enumerate(operands) if isinstance(o, ast.PathOp)]
    if len(paths) > 1:
        raise validation("Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition")
    if not paths:
        raise validation("Invalid condition in KeyConditionExpression: No key attribute specified")
    idx, path_op = paths[0]
    if len(path_op.path) > 1:
        raise validation("KeyConditionExpressions cannot have conditions on nested attributes")
    if idx != 0:
        if first_must_be_key:
            raise validation(
                f"Invalid condition in KeyConditionExpression: {first_must_be_key} operator must have the key "
                "attribute as its first operand"
            )
        op = _FLIP[op]
    name = path_op.path[0]
    if name in out:
        raise validation("KeyConditionExpressions must only contain one condition per key")
    values = [o.value for i, o in enumerate(operands) if i != idx]  # type: ignore[attr-defined]
    out[name] = (op, values)


def _flatten_and(cond: ast.Condition, acc: list) -> None:
    if isinstance(cond, ast.And):
        _flatten_and(cond.left, acc)
        _flatten_and(cond.right, acc)
    else:
        acc.append(cond)


def key_condition_from_parts(parts: dict, hash_key: str, range_key: str | None) -> KeyCondition:
    """Check attribute -> (op, values) against the key schema and build the KeyCondition."""
    if len(parts) > 2 or not parts:
        raise validation("Conditions can be of length 1 or 2 only")
    if hash_key not in parts:
        raise validation(f"Query condition missed key schema element: {hash_key}")
    for name in parts:
        if name != hash_key and name != range_key:
            if range_key is not None:
                raise validation(f"Query condition missed key schema element: {range_key}")
            raise validation("Query key condition not supported")
    op, values = parts[hash_key]
    if op != "=":
        raise validation("Query key condition not supported")
    kc = KeyCondition(hash_key, values[0])
    if range_key is not None and range_key in parts:
        sop, svalues = parts[range_key]
        if sop == "BEGINS_WITH" and value_type(svalues[0]) not in ("S", "B"):
            raise validation(
                "Invalid KeyConditionExpression: Incorrect operand type for operator or function; "
                f"operator or function: begins_with, operand type: {value_type(svalues[0])}"
            )
        kc.sort_key = range_key
        kc.sort_op = sop
        kc.sort_values = list(svalues)
    return kc


def key_parts(cond: ast.Condition) -> dict:
    """attribute -> (operator, values) of a key condition: a conjunction of one condition per attribute."""
    conds: list = []
    _flatten_and(cond, conds)
    parts: dict = {}
    for c in conds:
        _single(c, parts)
    return parts


def key_condition_from_ast(cond: ast.Condition, hash_key: str, range_key: str | None) -> KeyCondition:
    return key_condition_from_parts(key_parts(cond), hash_key, range_key)
