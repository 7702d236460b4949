"""Update plans (from UpdateExpression or legacy AttributeUpdates) and applying them to wire-form items.

All right-hand sides are computed against the item as it was before the update (DynamoDB semantics), then the
actions are applied: SET, REMOVE, ADD, DELETE. Containers are copied only along the paths that change, so the
old item is never modified and untouched sub-documents are shared with it.
"""

from __future__ import annotations

from decimal import Decimal

from dynavault.dynamodb.expressions.ast import Operand, PathOp, Projection, path_str, project, resolve
from dynavault.dynamodb.numbers import (
    ARITH_CTX,
    MAX_DIGITS,
    MAX_EXPONENT,
    MIN_EXPONENT,
    MSG_DIGITS,
    MSG_OVERFLOW,
    MSG_UNDERFLOW,
    format_number,
    to_decimal,
)
from dynavault.dynamodb.values import set_key, value_type
from dynavault.errors import validation

MSG_NO_ATTRIBUTE = "The provided expression refers to an attribute that does not exist in the item"
MSG_BAD_TYPE = "An operand in the update expression has an incorrect data type"
MSG_BAD_PATH = "The document path provided in the update expression is invalid for update"


def key_update_error(name: str):
    return validation(
        f"One or more parameter values were invalid: Cannot update attribute {name}. This attribute is part of the key"
    )


# ---------------------------------------------------------------------------------------------- SET values


def _operand_value(op: Operand, item: dict | None) -> dict:
    v = op.get(item)
    if v is None:
        raise validation(MSG_NO_ATTRIBUTE)
    return v


class IfNotExists(Operand):
    __slots__ = ("path", "default")

    def __init__(self, path: tuple, default: Operand) -> None:
        self.path = path
        self.default = default

    def get(self, item: dict | None) -> dict | None:
        v = resolve(item, self.path)
        return v if v is not None else self.default.get(item)

    def __repr__(self) -> str:
        return f"IfNotExists({self.path!r}, {self.default!r})"


class ListAppend(Operand):
    __slots__ = ("left", "right")

    def __init__(self, left: Operand, right: Operand) -> None:
        self.left = left
        self.right = right

    def get(self, item: dict | None) -> dict | None:
        a = _operand_value(self.left, item)
        b = _operand_value(self.right, item)
        la, lb = a.get("L"), b.get("L")
        if la is None or lb is None:
            raise validation(MSG_BAD_TYPE)
        return {"L": la + lb}

    def __repr__(self) -> str:
        return f"ListAppend({self.left!r}, {self.right!r})"


def checked_number(num: Decimal) -> str:
    """Format an arithmetic result, enforcing DynamoDB's number range and precision."""
    if not num.is_zero():
        adjusted = num.adjusted()
        if adjusted > MAX_EXPONENT:
            raise validation(MSG_OVERFLOW)
        if adjusted < MIN_EXPONENT:
            raise validation(MSG_UNDERFLOW)
        if len(num.normalize(ARITH_CTX).as_tuple().digits) > MAX_DIGITS:
            raise validation(MSG_DIGITS)
    return format_number(num)


class Arith(Operand):
    __slots__ = ("op", "left", "right")

    def __init__(self, op: str, left: Operand, right: Operand) -> None:
        self.op = op
        self.left = left
        self.right = right

    def get(self, item: dict | None) -> dict | None:
        a = _operand_value(self.left, item)
        b = _operand_value(self.right, item)
        x, y = a.get("N"), b.get("N")
        if x is None or y is None:
            raise validation(MSG_BAD_TYPE)
        if self.op == "+":
            r = ARITH_CTX.add(to_decimal(x), to_decimal(y))
        else:
            r = ARITH_CTX.subtract(to_decimal(x), to_decimal(y))
        return {"N": checked_number(r)}

    def __repr__(self) -> str:
        return f"Arith({self.op!r}, {self.left!r}, {self.right!r})"


# ---------------------------------------------------------------------------------------------- the plan


class UpdatePlan:
    """Parsed update: ``sets`` [(path, Operand)], ``removes`` [path], ``adds``/``deletes`` [(path, value)]."""

    __slots__ = ("sets", "removes", "adds", "deletes", "paths", "_projection")

    def __init__(self, sets: tuple, removes: tuple, adds: tuple, deletes: tuple) -> None:
        self.sets = sets
        self.removes = removes
        self.adds = adds
        self.deletes = deletes
        self.paths = tuple(p for p, _ in sets) + tuple(removes) + tuple(p for p, _ in adds) + tuple(
            p for p, _ in deletes
        )
        self._projection: Projection | None = None

    @property
    def only_removals(self) -> bool:
        """Only REMOVE / DELETE actions: applied to a missing item, the item stays missing (DynamoDB creates
        nothing, since there is nothing to take away)."""
        return not self.sets and not self.adds

    @property
    def projection(self) -> Projection:
        """The updated paths as a projection (for ReturnValues UPDATED_OLD / UPDATED_NEW)."""
        if self._projection is None:
            self._projection = Projection(_non_overlapping(self.paths))
        return self._projection

    def __repr__(self) -> str:
        return f"UpdatePlan(sets={self.sets!r}, removes={self.removes!r}, adds={self.adds!r}, deletes={self.deletes!r})"


def _non_overlapping(paths: tuple) -> tuple:
    # Expression plans never overlap (the parser rejects it); legacy ones name each attribute once. So only
    # exact repeats can occur: drop those, in linear time.
    return tuple(dict.fromkeys(paths))


def _copy_container(v: dict) -> dict:
    if "M" in v:
        return {"M": dict(v["M"])}
    return {"L": list(v["L"])}


def _parent_for_write(root: dict, path: tuple) -> tuple[dict | list, str | int] | None:
    """Copy containers along ``path[:-1]`` in the new item and return (container, last key).

    None when the parent does not exist; raises when it exists with the wrong type.
    """
    if len(path) == 1:
        return root, path[0]
    cur = root.get(path[0])
    if cur is None:
        return None
    container: dict | list = root
    key: str | int = path[0]
    for i in range(1, len(path)):
        e = path[i]
        want = "L" if isinstance(e, int) else "M"
        if cur is None:
            return None
        if want not in cur:
            raise validation(MSG_BAD_PATH)
        cur = _copy_container(cur)
        container[key] = cur  # type: ignore[index]
        container = cur[want]
        key = e
        if i < len(path) - 1:
            if isinstance(e, int):
                cur = container[e] if e < len(container) else None  # type: ignore[index, arg-type]
            else:
                cur = container.get(e)  # type: ignore[union-attr]
    return container, key


def _write(root: dict, path: tuple, value: dict) -> None:
    found = _parent_for_write(root, path)
    if found is None:
        raise validation(MSG_BAD_PATH)
    container, key = found
    if isinstance(key, int):
        lst = container
        if key < len(lst):  # type: ignore[arg-type]
            lst[key] = value  # type: ignore[index]
        else:
            lst.append(value)  # type: ignore[union-attr]
    else:
        container[key] = value  # type: ignore[index]


def _remove(root: dict, path: tuple) -> None:
    if len(path) == 1:
        root.pop(path[0], None)
        return
    if resolve(root, path[:-1]) is None:
        raise validation(MSG_BAD_PATH)
    if resolve(root, path) is None:
        # Removing something absent is a no-op; skip copying.
        parent = resolve(root, path[:-1])
        want = "L" if isinstance(path[-1], int) else "M"
        if want not in parent:  # type: ignore[operator]
            raise validation(MSG_BAD_PATH)
        return
    container, key = _parent_for_write(root, path)  # type: ignore[misc]
    if isinstance(key, int):
        del container[key]  # type: ignore[arg-type]
    else:
        del container[key]  # type: ignore[arg-type]


def _sort_key(path: tuple) -> tuple:
    return tuple((1, e) if isinstance(e, int) else (0, e) for e in path)


def _add(old: dict | None, value: dict) -> dict:
    t = value_type(value)
    if old is None:
        return value
    ot = value_type(old)
    if ot != t:
        raise validation(MSG_BAD_TYPE)
    if t == "N":
        return {"N": checked_number(ARITH_CTX.add(to_decimal(old["N"]), to_decimal(value["N"])))}
    if t in ("SS", "NS", "BS"):
        seen = {set_key(t, m) for m in old[t]}
        merged = list(old[t])
        for m in value[t]:
            k = set_key(t, m)
            if k not in seen:
                seen.add(k)
                merged.append(m)
        return {t: merged}
    raise validation(MSG_BAD_TYPE)


def _delete(old: dict, value: dict) -> dict | None:
    t = value_type(value)
    if value_type(old) != t or t not in ("SS", "NS", "BS"):
        raise validation(MSG_BAD_TYPE)
    drop = {set_key(t, m) for m in value[t]}
    kept = [m for m in old[t] if set_key(t, m) not in drop]
    return {t: kept} if kept else None


def apply_update(plan: UpdatePlan, item: dict | None, key_names: set[str] | frozenset[str]) -> dict:
    """The new item after applying ``plan`` to ``item`` (None = a new item); never mutates ``item``."""
    for p in plan.paths:
        if p[0] in key_names:
            raise key_update_error(p[0])
    old = item or {}
    values = [(path, op.get(old) if not isinstance(op, PathOp) else _operand_value(op, old)) for path, op in plan.sets]
    for _, v in values:
        if v is None:
            raise validation(MSG_NO_ATTRIBUTE)
    new = dict(old)
    # In path order, so several list elements set past a list's end are appended in the order of their
    # indexes, not of the expression (DynamoDB's rule); SET paths never overlap, so nothing else changes.
    for path, v in sorted(values, key=lambda pv: _sort_key(pv[0])):
        _write(new, path, v)  # type: ignore[arg-type]
    for path in sorted(plan.removes, key=_sort_key, reverse=True):
        _remove(new, path)
    for path, v in plan.adds:
        current = resolve(new, path)
        if len(path) > 1 and resolve(new, path[:-1]) is None:
            raise validation(MSG_BAD_PATH)
        _write(new, path, _add(current, v))
    for path, v in plan.deletes:
        current = resolve(new, path)
        if current is None:
            if len(path) > 1 and resolve(new, path[:-1]) is None:
                raise validation(MSG_BAD_PATH)
            continue
        kept = _delete(current, v)
        if kept is None:
            _remove(new, path)
        else:
            _write(new, path, kept)
    return new


def updated_attributes(plan: UpdatePlan, old: dict | None, new: dict | None, mode: str) -> dict:
    """ReturnValues UPDATED_OLD / UPDATED_NEW: the updated paths as they were before / are after."""
    if mode == "UPDATED_OLD":
        return project(plan.projection, old)
    if mode == "UPDATED_NEW":
        return project(plan.projection, new)
    raise ValueError(f"not an UPDATED_* mode: {mode}")


__all__ = [
    "Arith",
    "IfNotExists",
    "ListAppend",
    "UpdatePlan",
    "apply_update",
    "updated_attributes",
    "path_str",
]
