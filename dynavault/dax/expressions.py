"""DAX's pre-parsed expressions (CBOR trees) rendered back into DynamoDB expression text.

The clients parse an expression themselves and send ``[1, tree, values]`` (a projection: ``[1, paths]``),
placeholders already substituted. The engine takes expression text, so each tree is written out again with
every attribute name as a ``#`` placeholder and every value as a ``:`` placeholder: the engine's own parser,
resolver and limits then judge it exactly as they judge an HTTP request's.
"""

from __future__ import annotations

import cbor2

from .attributes import TAG_PATH_ORDINAL, bad, to_av
from .cbor_stream import CborStreamError, loads_one

_COMPARATORS = {0: "=", 1: "<>", 2: "<", 3: ">=", 4: ">", 5: "<="}
_FUNCTIONS = {11: "attribute_exists", 12: "attribute_not_exists", 13: "attribute_type", 14: "begins_with",
              15: "contains", 16: "size", 23: "if_not_exists", 24: "list_append"}
_AND, _OR, _NOT, _BETWEEN, _IN, _VARIABLE, _PATH = 6, 7, 8, 9, 10, 17, 18
_SET, _ADD, _DELETE, _REMOVE = 19, 20, 21, 22
_PLUS, _MINUS = 25, 26
_ACTIONS = {_SET: "SET", _REMOVE: "REMOVE", _ADD: "ADD", _DELETE: "DELETE"}
#: tree nodes of one expression: DynamoDB's own limits (300 operators, 4 KB text) stop far below this
_MAX_NODES = 20000


class Placeholders:
    """The ExpressionAttributeNames and -Values of one request, shared by its expressions."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self._by_name: dict[str, str] = {}
        self.values: dict[str, dict] = {}

    def name(self, text: str) -> str:
        key = self._by_name.get(text)
        if key is None:
            key = self._by_name[text] = f"#n{len(self._by_name)}"
            self.names[key] = text
        return key

    def params(self) -> dict:
        out = {}
        if self.names:
            out["ExpressionAttributeNames"] = dict(self.names)
        if self.values:
            out["ExpressionAttributeValues"] = dict(self.values)
        return out


class _Renderer:
    def __init__(self, ph: Placeholders, prefix: str, values: list) -> None:
        self.ph = ph
        self.prefix = prefix
        self.values = values
        self.nodes = 0

    def node(self, n) -> list:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise bad("Invalid expression: too many operators")
        if not isinstance(n, (list, tuple)) or not n or not isinstance(n[0], int) or isinstance(n[0], bool):
            raise bad("Invalid expression: malformed expression tree")
        return list(n)

    def operand(self, n) -> str:
        n = self.node(n)
        op = n[0]
        if op == _VARIABLE and len(n) == 2 and isinstance(n[1], int) and 0 <= n[1] < len(self.values):
            key = f":{self.prefix}{n[1]}"
            self.ph.values[key] = to_av(self.values[n[1]])
            return key
        if op == _PATH:
            return self.path(n)
        if op in (_PLUS, _MINUS) and len(n) == 3:
            return f"{self.operand(n[1])} {'+' if op == _PLUS else '-'} {self.operand(n[2])}"
        if op in _FUNCTIONS:
            return self.function(n)
        raise bad("Invalid expression: malformed operand")

    def path(self, n: list) -> str:
        if len(n) < 2 or not isinstance(n[1], str):
            raise bad("Invalid expression: malformed document path")
        out = [self.ph.name(n[1])]
        for element in n[2:]:
            if isinstance(element, str):
                out.append("." + self.ph.name(element))
            elif (isinstance(element, cbor2.CBORTag) and element.tag == TAG_PATH_ORDINAL
                  and isinstance(element.value, int) and not isinstance(element.value, bool)):
                out.append(f"[{element.value}]")
            else:
                raise bad("Invalid expression: malformed document path")
        return "".join(out)

    def function(self, n: list) -> str:
        return f"{_FUNCTIONS[n[0]]}({', '.join(self.operand(a) for a in n[1:])})"

    def condition(self, n) -> str:
        n = self.node(n)
        op = n[0]
        if op in _COMPARATORS and len(n) == 3:
            return f"{self.operand(n[1])} {_COMPARATORS[op]} {self.operand(n[2])}"
        if op in (_AND, _OR) and len(n) == 3:
            return f"({self.condition(n[1])} {'AND' if op == _AND else 'OR'} {self.condition(n[2])})"
        if op == _NOT and len(n) == 2:
            return f"(NOT {self.condition(n[1])})"
        if op == _BETWEEN and len(n) == 4:
            return f"{self.operand(n[1])} BETWEEN {self.operand(n[2])} AND {self.operand(n[3])}"
        if op == _IN and len(n) == 3 and isinstance(n[2], (list, tuple)) and n[2]:
            return f"{self.operand(n[1])} IN ({', '.join(self.operand(a) for a in n[2])})"
        if op in _FUNCTIONS:
            return self.function(n)
        raise bad("Invalid expression: malformed condition")

    def update(self, actions) -> str:
        if not isinstance(actions, (list, tuple)) or not actions:
            raise bad("Invalid UpdateExpression: malformed expression tree")
        groups: dict[int, list[str]] = {}
        for a in actions:
            a = self.node(a)
            op = a[0]
            if op == _SET and len(a) == 3:
                text = f"{self.operand(a[1])} = {self.operand(a[2])}"
            elif op in (_ADD, _DELETE) and len(a) == 3:
                text = f"{self.operand(a[1])} {self.operand(a[2])}"
            elif op == _REMOVE and len(a) == 2:
                text = self.operand(a[1])
            else:
                raise bad("Invalid UpdateExpression: malformed action")
            groups.setdefault(op, []).append(text)
        return " ".join(f"{_ACTIONS[op]} {', '.join(texts)}" for op, texts in groups.items())

    def projection(self, paths) -> str:
        if not isinstance(paths, (list, tuple)) or not paths:
            raise bad("Invalid ProjectionExpression: malformed expression tree")
        return ", ".join(self.path(self.node(p)) for p in paths)


def _load(data, kind: str) -> list:
    if not isinstance(data, (bytes, bytearray)):
        raise bad(f"Invalid {kind}: an encoded expression was expected")
    try:
        value = loads_one(bytes(data))
    except CborStreamError:
        raise bad(f"Invalid {kind}: malformed encoding") from None
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3) or value[0] != 1:
        raise bad(f"Invalid {kind}: unknown encoding")
    return list(value)


def render(data, kind: str, ph: Placeholders, prefix: str) -> str:
    """Expression text for an encoded expression of ``kind`` ("Condition", "KeyCondition", "Filter", "Update",
    "Projection"); its names and values go to ``ph`` (value placeholders start with ``prefix``)."""
    value = _load(data, kind + "Expression")
    values = value[2] if len(value) == 3 else []
    if not isinstance(values, (list, tuple)):
        raise bad(f"Invalid {kind}Expression: malformed values")
    r = _Renderer(ph, prefix, list(values))
    if kind == "Update":
        return r.update(value[1])
    if kind == "Projection":
        return r.projection(value[1])
    return r.condition(value[1])


def projection_paths(data) -> list[list]:
    """The document paths of an encoded projection, each as a list of names (str) and list indexes (int):
    the order of a projected response's ordinals."""
    value = _load(data, "ProjectionExpression")
    out = []
    paths = value[1]
    if not isinstance(paths, (list, tuple)):
        raise bad("Invalid ProjectionExpression: malformed expression tree")
    for p in paths:
        if not isinstance(p, (list, tuple)) or len(p) < 2 or p[0] != _PATH:
            raise bad("Invalid ProjectionExpression: malformed document path")
        out.append([e.value if isinstance(e, cbor2.CBORTag) else e for e in p[1:]])
    return out
