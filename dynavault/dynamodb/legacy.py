"""Legacy (pre-expression) request parameters turned into the same trees expressions produce.

Expected + ConditionalOperator, QueryFilter / ScanFilter, KeyConditions, AttributeUpdates and AttributesToGet
become Condition, KeyCondition, UpdatePlan and Projection objects, so operations keep a single evaluator.
Validation texts are DynamoDB's.
"""

from __future__ import annotations

from dynavault.dynamodb.expressions import ast
from dynavault.dynamodb.expressions.keycond import KeyCondition, key_condition_from_parts
from dynavault.dynamodb.expressions.update import IfNotExists, ListAppend, UpdatePlan
from dynavault.dynamodb.values import compare, validate_attribute_value, value_type
from dynavault.errors import validation

_INVALID = "One or more parameter values were invalid: "

# Number of AttributeValueList entries each operator takes: exact count, or (min, max).
_ARG_COUNTS: dict[str, int | tuple[int, int]] = {
    "NULL": 0,
    "NOT_NULL": 0,
    "EQ": 1,
    "NE": 1,
    "LE": 1,
    "LT": 1,
    "GE": 1,
    "GT": 1,
    "CONTAINS": 1,
    "NOT_CONTAINS": 1,
    "BEGINS_WITH": 1,
    "IN": (1, 1 << 30),
    "BETWEEN": 2,
}
_ALLOWED_TYPES = {
    "EQ": ("S", "N", "B", "SS", "NS", "BS", "BOOL", "NULL", "L", "M"),
    "NE": ("S", "N", "B", "SS", "NS", "BS", "BOOL", "NULL", "L", "M"),
    "LE": ("S", "N", "B"),
    "LT": ("S", "N", "B"),
    "GE": ("S", "N", "B"),
    "GT": ("S", "N", "B"),
    "CONTAINS": ("S", "N", "B", "BOOL", "NULL", "L", "M"),
    "NOT_CONTAINS": ("S", "N", "B", "BOOL", "NULL", "L", "M"),
    "BEGINS_WITH": ("S", "B"),
    "IN": ("S", "N", "B"),
    "BETWEEN": ("S", "N", "B"),
}
_KEY_OPS = {"EQ": "=", "LE": "<=", "LT": "<", "GE": ">=", "GT": ">", "BEGINS_WITH": "BEGINS_WITH", "BETWEEN": "BETWEEN"}
_COMPARE_OPS = {"EQ": "=", "NE": "<>", "LE": "<=", "LT": "<", "GE": ">=", "GT": ">"}


def _check_count(op: str, n: int) -> None:
    want = _ARG_COUNTS.get(op)
    if want is None:
        raise validation(f"{_INVALID}Invalid number of argument(s) for the {op} ComparisonOperator")
    ok = n == want if isinstance(want, int) else want[0] <= n <= want[1]
    if not ok:
        raise validation(f"{_INVALID}Invalid number of argument(s) for the {op} ComparisonOperator")


def _check_values(op: str, values: list) -> None:
    """Shared checks on an AttributeValueList once its length is right."""
    if not values:
        return
    t0 = value_type(values[0])
    if any(value_type(v) != t0 for v in values):
        raise validation(f"{_INVALID}AttributeValues inside AttributeValueList must be of same type")
    allowed = _ALLOWED_TYPES.get(op, ())
    for v in values:
        t = value_type(v)
        if t not in allowed:
            raise validation(f"{_INVALID}ComparisonOperator {op} is not valid for {t} AttributeValue type")
    if op == "BETWEEN":
        c = compare(values[0], values[1])
        if c is not None and c > 0:
            raise validation(
                "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound"
            )


def _comparison(name: str, op: str, values: list) -> ast.Condition:
    path = ast.PathOp((name,))
    vals = [ast.ValueOp(v) for v in values]
    if op in _COMPARE_OPS:
        return ast.Compare(_COMPARE_OPS[op], path, vals[0])
    if op == "NULL":
        return ast.Exists((name,), False)
    if op == "NOT_NULL":
        return ast.Exists((name,), True)
    if op == "CONTAINS":
        return ast.Contains(path, vals[0])
    if op == "NOT_CONTAINS":
        return ast.Not(ast.Contains(path, vals[0]))
    if op == "BEGINS_WITH":
        return ast.BeginsWith(path, vals[0])
    if op == "IN":
        return ast.In(path, tuple(vals))
    return ast.Between(path, vals[0], vals[1])


def _combine(conds: list, conditional_operator: str | None) -> ast.Condition:
    if not conds:
        return ast.TrueCondition()
    result = conds[0]
    for c in conds[1:]:
        result = ast.Or(result, c) if conditional_operator == "OR" else ast.And(result, c)
    return result


def expected_to_condition(expected: dict, conditional_operator: str | None = None) -> ast.Condition:
    """Expected (+ ConditionalOperator) of PutItem / UpdateItem / DeleteItem as a Condition."""
    conds = []
    for name, cond in expected.items():
        if "AttributeValueList" in cond and "Value" in cond:
            raise validation(f"{_INVALID}Value and AttributeValueList cannot be used together for Attribute: {name}")
        op = cond.get("ComparisonOperator")
        if op is not None:
            if "Exists" in cond:
                raise validation(f"{_INVALID}Exists and ComparisonOperator cannot be used together for Attribute: {name}")
            if op not in ("NULL", "NOT_NULL") and "AttributeValueList" not in cond and "Value" not in cond:
                raise validation(
                    f"{_INVALID}Value or AttributeValueList must be used with ComparisonOperator: {op} "
                    f"for Attribute: {name}"
                )
            values = cond.get("AttributeValueList")
            if values is None:
                values = [cond["Value"]] if cond.get("Value") is not None else []
            for v in values:
                validate_attribute_value(v, name)
            _check_count(op, len(values))
            _check_values(op, values)
            conds.append(_comparison(name, op, values))
        elif "AttributeValueList" in cond:
            raise validation(
                f"{_INVALID}AttributeValueList can only be used with a ComparisonOperator for Attribute: {name}"
            )
        else:
            exists = cond.get("Exists")
            value = cond.get("Value")
            if (exists is None or exists) and value is None:
                shown = "null" if exists is None else "true"
                raise validation(f"{_INVALID}Value must be provided when Exists is {shown} for Attribute: {name}")
            if exists is False and value is not None:
                raise validation(f"{_INVALID}Value cannot be used when Exists is false for Attribute: {name}")
            if value is None:
                conds.append(ast.Exists((name,), False))
            else:
                validate_attribute_value(value, name)
                conds.append(ast.Compare("=", ast.PathOp((name,)), ast.ValueOp(value)))
    return _combine(conds, conditional_operator)


def _validated_filter(conds: dict) -> list:
    out = []
    for name, cond in conds.items():
        op = cond.get("ComparisonOperator")
        values = cond.get("AttributeValueList") or []
        for v in values:
            validate_attribute_value(v, name)
        _check_count(op, len(values))
        _check_values(op, values)
        out.append((name, op, values))
    return out


def filter_to_condition(filter_: dict, conditional_operator: str | None = None) -> ast.Condition:
    """QueryFilter / ScanFilter (+ ConditionalOperator) as a Condition."""
    return _combine([_comparison(n, op, vals) for n, op, vals in _validated_filter(filter_)], conditional_operator)


def key_conditions_to_key_condition(conds: dict, hash_key: str, range_key: str | None) -> KeyCondition:
    """Legacy KeyConditions of a Query as a KeyCondition for the table's (or index's) key schema."""
    checked = _validated_filter(conds)
    if len(checked) not in (1, 2):
        raise validation("Conditions can be of length 1 or 2 only")
    parts = {}
    for name, op, values in checked:
        kop = _KEY_OPS.get(op)
        if kop is None:
            raise validation("Attempted conditional constraint is not an indexable operation")
        parts[name] = (kop, values)
    return key_condition_from_parts(parts, hash_key, range_key)


def attribute_updates_to_plan(updates: dict) -> UpdatePlan:
    """Legacy AttributeUpdates (PUT / ADD / DELETE per attribute) as an UpdatePlan."""
    sets, removes, adds, deletes = [], [], [], []
    for name, upd in updates.items():
        action = upd.get("Action") or "PUT"
        value = upd.get("Value")
        if value is not None:
            validate_attribute_value(value, name)
        if value is None and action != "DELETE":
            raise validation(f"{_INVALID}Only DELETE action is allowed when no attribute value is specified")
        path = (name,)
        if action == "PUT":
            sets.append((path, ast.ValueOp(value)))  # type: ignore[arg-type]
        elif action == "DELETE":
            if value is None:
                removes.append(path)
                continue
            t = value_type(value)
            if t not in ("SS", "NS", "BS"):
                raise validation(f"{_INVALID}DELETE action with value is not supported for the type {t}")
            deletes.append((path, value))
        elif action == "ADD":
            t = value_type(value)  # type: ignore[arg-type]
            if t not in ("L", "SS", "NS", "BS", "N"):
                raise validation(f"{_INVALID}ADD action is not supported for the type {t}")
            if t == "L":
                # Legacy ADD appends to a list, creating it when absent.
                sets.append((path, ListAppend(IfNotExists(path, ast.ValueOp({"L": []})), ast.ValueOp(value))))
            else:
                adds.append((path, value))
        else:
            raise validation(
                f"1 validation error detected: Value '{action}' at 'attributeUpdates.{name}.member.action' failed "
                "to satisfy constraint: Member must satisfy enum value set: [ADD, PUT, DELETE]"
            )
    return UpdatePlan(tuple(sets), tuple(removes), tuple(adds), tuple(deletes))


def attributes_to_get_to_projection(names: list[str]) -> ast.Projection:
    """AttributesToGet as a Projection of top-level attributes (no reserved-word rules apply)."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise validation(f"{_INVALID}Duplicate value in attribute name: {n}")
        seen.add(n)
    return ast.Projection(tuple((n,) for n in names))


# Expression and non-expression parameters of each operation, in DynamoDB's message order.
_PARAMS = {
    "PutItem": (("ConditionExpression",), ("Expected",)),
    "DeleteItem": (("ConditionExpression",), ("Expected",)),
    "UpdateItem": (("UpdateExpression", "ConditionExpression"), ("AttributeUpdates", "Expected")),
    "GetItem": (("ProjectionExpression",), ("AttributesToGet",)),
    "BatchGetItem": (("ProjectionExpression",), ("AttributesToGet",)),
    "Query": (
        ("FilterExpression", "KeyConditionExpression", "ProjectionExpression"),
        ("AttributesToGet", "QueryFilter", "ConditionalOperator", "KeyConditions"),
    ),
    "Scan": (("FilterExpression", "ProjectionExpression"), ("AttributesToGet", "ScanFilter", "ConditionalOperator")),
}


def check_no_mixing(request: dict, operation: str) -> None:
    """DynamoDB's rules against mixing expression and legacy parameters, and stray placeholder maps."""
    exprs, non_exprs = _PARAMS[operation]
    used_exprs = [e for e in exprs if request.get(e) is not None]
    if used_exprs:
        candidates = list(non_exprs)
        # KeyConditions alone may accompany other expressions when no KeyConditionExpression is given.
        if request.get("KeyConditions") is not None and request.get("KeyConditionExpression") is None:
            candidates = [n for n in candidates if n != "KeyConditions"]
        used_non = [n for n in candidates if request.get(n) is not None]
        if used_non:
            raise validation(
                "Can not use both expression and non-expression parameters in the same request: "
                f"Non-expression parameters: {{{', '.join(used_non)}}} "
                f"Expression parameters: {{{', '.join(used_exprs)}}}"
            )
    if request.get("ExpressionAttributeNames") is not None and not used_exprs:
        raise validation("ExpressionAttributeNames can only be specified when using expressions")
    value_exprs = [e for e in exprs if e != "ProjectionExpression"]
    if (
        value_exprs
        and request.get("ExpressionAttributeValues") is not None
        and all(request.get(e) is None for e in value_exprs)
    ):
        verb = "are" if len(value_exprs) > 1 else "is"
        raise validation(
            "ExpressionAttributeValues can only be specified when using expressions: "
            f"{' and '.join(value_exprs)} {verb} null"
        )
