"""The second pass over an expression: resolve one request's ``#name`` / ``:value`` placeholders in a raw tree
(parser.py) and build the ``ast`` / ``update`` nodes, collecting the first error of each kind. DynamoDB reports
semantic errors in a fixed order of kinds (not in text order), so the collected errors are raised by that
priority.
"""

from __future__ import annotations

from dynavault.dynamodb.expressions import ast
from dynavault.dynamodb.expressions.parser import (
    COMPARATORS,
    COND_FUNCTIONS,
    MAX_IN_OPERANDS,
    TYPE_WORDS,
    UPDATE_FUNCTIONS,
    RawNode,
    RFunc,
    RNode,
    RPath,
    RValue,
    parse_projection_raw,
)
from dynavault.dynamodb.expressions.reserved import is_reserved
from dynavault.dynamodb.expressions.update import Arith, IfNotExists, ListAppend, UpdatePlan
from dynavault.dynamodb.values import TYPES, compare, value_type
from dynavault.errors import validation

_ORDERING = frozenset({"<", "<=", ">", ">="})
_COND_ORDER = (
    "parens",
    "unknown_function",
    "misused_function",
    "reserved",
    "undefined",
    "operand_count",
    "distinct",
    "function",
)
_UPDATE_ORDER = (
    "reserved",
    "unknown_function",
    "section",
    "undefined",
    "overlap",
    "conflict",
    "operand",
    "function",
)
_PROJECTION_ORDER = ("reserved", "undefined", "overlap", "conflict")


class Resolver:
    def __init__(self, kind: str, names: dict | None, values: dict | None) -> None:
        self.kind = kind
        self.names = names or {}
        self.values = values or {}
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()
        self.errors: dict[str, str] = {}

    def error(self, category: str, message: str) -> None:
        self.errors.setdefault(category, message)

    def raise_errors(self, order: tuple) -> None:
        if not self.errors:
            return
        for cat in order:
            msg = self.errors.get(cat)
            if msg is not None:
                raise validation(f"Invalid {self.kind}: {msg}")

    def r_path(self, rp: RPath) -> tuple:
        out: list = []
        for e in rp.elems:
            if isinstance(e, int):
                out.append(e)
            elif e[0] == "n":
                if is_reserved(e[1]):
                    self.error("reserved", f"Attribute name is a reserved keyword; reserved keyword: {e[1]}")
                out.append(e[1])
            else:
                name = self.names.get(e[1])
                if name is None:
                    self.error(
                        "undefined",
                        "An expression attribute name used in the document path is not defined; "
                        f"attribute name: {e[1]}",
                    )
                    name = e[1]
                else:
                    self.used_names.add(e[1])
                out.append(name)
        return tuple(out)

    def r_value(self, rv: RValue) -> dict:
        v = self.values.get(rv.name)
        if v is None:
            self.error(
                "undefined",
                f"An expression attribute value used in expression is not defined; attribute value: {rv.name}",
            )
            return {"NULL": True}
        self.used_values.add(rv.name)
        return v

    def check_parens(self, node: RawNode) -> None:
        if node.paren > 1:
            self.error("parens", "The expression has redundant parentheses;")

    # -- conditions
    def r_condition(self, node: RawNode) -> ast.Condition:
        self.check_parens(node)
        if isinstance(node, RFunc):
            return self.r_cond_function(node)
        if not isinstance(node, RNode):
            # A bare path or value can't be a condition; the grammar never produces this.
            raise AssertionError(f"not a condition: {node!r}")
        op = node.op
        if op == "AND":
            return ast.And(self.r_condition(node.args[0]), self.r_condition(node.args[1]))
        if op == "OR":
            return ast.Or(self.r_condition(node.args[0]), self.r_condition(node.args[1]))
        if op == "NOT":
            return ast.Not(self.r_condition(node.args[0]))
        args = [self.r_operand(a) for a in node.args]
        if op in COMPARATORS:
            self.check_distinct(op, args)
            if op in _ORDERING:
                self.check_ordered(op, args)
            return ast.Compare(op, args[0], args[1])
        if op == "BETWEEN":
            self.check_ordered(op, args)
            lo, hi = args[1], args[2]
            if isinstance(lo, ast.ValueOp) and isinstance(hi, ast.ValueOp):
                tl, th = value_type(lo.value), value_type(hi.value)
                bounds = (
                    f"lower bound operand: AttributeValue: {{{tl}:{lo.value[tl]}}}, "
                    f"upper bound operand: AttributeValue: {{{th}:{hi.value[th]}}}"
                )
                if tl != th:
                    self.error(
                        "function",
                        f"The BETWEEN operator requires same data type for lower and upper bounds; {bounds}",
                    )
                else:
                    c = compare(lo.value, hi.value)
                    if c is not None and c > 0:
                        self.error(
                            "function",
                            "The BETWEEN operator requires upper bound to be greater than or equal to lower "
                            f"bound; {bounds}",
                        )
            return ast.Between(args[0], lo, hi)
        # IN
        if len(args) - 1 > MAX_IN_OPERANDS:
            self.error(
                "function", f"The IN operator is provided with too many operands; number of operands: {len(args) - 1}"
            )
        return ast.In(args[0], tuple(args[1:]))

    def check_distinct(self, op: str, args: list) -> None:
        if len(args) == 2 and isinstance(args[0], ast.PathOp) and isinstance(args[1], ast.PathOp):
            if args[0].path == args[1].path:
                self.error(
                    "distinct",
                    "The first operand must be distinct from the remaining operands for this operator or function; "
                    f"operator: {op}, first operand: {ast.path_str(args[0].path)}",
                )

    def check_ordered(self, op: str, args: list) -> None:
        """An ordering needs strings, numbers or binaries: a constant of another type is a validation error
        (an item attribute of another type only makes the comparison false)."""
        for a in args:
            if isinstance(a, ast.ValueOp) and value_type(a.value) not in ("S", "N", "B"):
                self.error(
                    "function",
                    "Incorrect operand type for operator or function; "
                    f"operator or function: {op}, operand type: {value_type(a.value)}",
                )
                return

    def r_operand(self, node: RawNode) -> ast.Operand:
        self.check_parens(node)
        if isinstance(node, RPath):
            return ast.PathOp(self.r_path(node))
        if isinstance(node, RValue):
            return ast.ValueOp(self.r_value(node))
        if isinstance(node, RFunc):
            if node.name == "size":
                if len(node.args) != 1:
                    self.error(
                        "operand_count",
                        "Incorrect number of operands for operator or function; operator or function: size, "
                        f"number of operands: {len(node.args)}",
                    )
                    return ast.ValueOp({"NULL": True})
                arg = self.r_operand(node.args[0])
                if isinstance(arg, ast.ValueOp) and value_type(arg.value) in ("N", "BOOL", "NULL"):
                    self.error(
                        "function",
                        "Incorrect operand type for operator or function; operator or function: size, "
                        f"operand type: {value_type(arg.value)}",
                    )
                if isinstance(arg, ast.SizeOp):
                    self.error(
                        "function",
                        "Incorrect operand type for operator or function; operator or function: size, operand type: N",
                    )
                return ast.SizeOp(arg)
            if node.name in COND_FUNCTIONS:
                self.error(
                    "misused_function",
                    f"The function is not allowed to be used this way in an expression; function: {node.name}",
                )
            else:
                self.error("unknown_function", f"Invalid function name; function: {node.name}")
            for a in node.args:
                self.r_operand(a)
            return ast.ValueOp({"NULL": True})
        raise AssertionError(f"unexpected operand {node!r}")

    def r_cond_function(self, f: RFunc) -> ast.Condition:
        name = f.name
        dummy = ast.TrueCondition()
        if name not in COND_FUNCTIONS:
            self.error("unknown_function", f"Invalid function name; function: {name}")
            for a in f.args:
                self.r_operand(a)
            return dummy
        if name == "size":
            self.error("misused_function", "The function is not allowed to be used this way in an expression; function: size")
            return dummy
        args = [self.r_operand(a) for a in f.args]
        n = COND_FUNCTIONS[name]
        if len(args) != n:
            self.error(
                "operand_count",
                "Incorrect number of operands for operator or function; "
                f"operator or function: {name}, number of operands: {len(args)}",
            )
            return dummy
        self.check_distinct(name, args)
        if name in ("attribute_exists", "attribute_not_exists", "attribute_type"):
            # attribute_type also takes a constant first operand (DynamoDB answers it as a test of that
            # constant's type); the other two need a document path.
            if not isinstance(args[0], ast.PathOp) and not (name == "attribute_type"
                                                             and isinstance(args[0], ast.ValueOp)):
                self.error("function", f"Operator or function requires a document path; operator or function: {name}")
                return dummy
            if name != "attribute_type":
                return ast.Exists(args[0].path, name == "attribute_exists")
            t = args[1]
            tt = value_type(t.value) if isinstance(t, ast.ValueOp) else "{NS,SS,L,BS,N,M,B,BOOL,NULL,S}"
            if tt != "S":
                self.error(
                    "function",
                    f"Incorrect operand type for operator or function; operator or function: {name}, operand type: {tt}",
                )
                return dummy
            type_name = t.value["S"]  # type: ignore[union-attr]
            if type_name not in TYPES:
                self.error(
                    "function",
                    f"Invalid attribute type name found; type: {type_name}, valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}",
                )
                return dummy
            if isinstance(args[0], ast.ValueOp):
                same = value_type(args[0].value) == type_name
                return ast.TrueCondition() if same else ast.Not(ast.TrueCondition())
            return ast.AttrType(args[0].path, type_name)
        if name == "begins_with":
            for a in args:
                tt = value_type(a.value) if isinstance(a, ast.ValueOp) else ("N" if isinstance(a, ast.SizeOp) else "")
                if tt and tt not in ("S", "B"):
                    self.error(
                        "function",
                        f"Incorrect operand type for operator or function; operator or function: {name}, operand type: {tt}",
                    )
                    return dummy
            return ast.BeginsWith(args[0], args[1])
        # contains() looks into a string, a binary, a set or a list; the value looked for may be anything
        first = args[0]
        if isinstance(first, ast.ValueOp) and value_type(first.value) in ("N", "BOOL", "NULL", "M"):
            self.error(
                "function",
                "Incorrect operand type for operator or function; "
                f"operator or function: {name}, operand type: {value_type(first.value)}",
            )
            return dummy
        return ast.Contains(first, args[1])

    # -- updates
    def r_set_value(self, node: RawNode) -> ast.Operand:
        if isinstance(node, RPath):
            return ast.PathOp(self.r_path(node))
        if isinstance(node, RValue):
            return ast.ValueOp(self.r_value(node))
        if isinstance(node, RNode):  # + or -
            args = [self.r_set_value(a) for a in node.args]
            for a in args:
                if isinstance(a, ast.ValueOp) and value_type(a.value) != "N":
                    self.error(
                        "function",
                        "Incorrect operand type for operator or function; "
                        f"operator or function: {node.op}, operand type: {value_type(a.value)}",
                    )
            return Arith(node.op, args[0], args[1])
        assert isinstance(node, RFunc)
        name = node.name
        if name not in UPDATE_FUNCTIONS:
            self.error("unknown_function", f"Invalid function name; function: {name}")
            return ast.ValueOp({"NULL": True})
        args = [self.r_set_value(a) for a in node.args]
        if len(args) != 2:
            self.error(
                "function",
                "Incorrect number of operands for operator or function; "
                f"operator or function: {name}, number of operands: {len(args)}",
            )
            return ast.ValueOp({"NULL": True})
        if name == "if_not_exists":
            if not isinstance(args[0], ast.PathOp):
                self.error("function", f"Operator or function requires a document path; operator or function: {name}")
                return ast.ValueOp({"NULL": True})
            return IfNotExists(args[0].path, args[1])
        for a in args:
            if isinstance(a, ast.ValueOp) and value_type(a.value) != "L":
                self.error(
                    "function",
                    "Incorrect operand type for operator or function; "
                    f"operator or function: {name}, operand type: {value_type(a.value)}",
                )
        return ListAppend(args[0], args[1])

    def check_overlaps(self, paths: list[tuple]) -> None:
        """Report, per kind, the first pair (in order of the second path, then the first) that overlaps or
        conflicts, as a pairwise comparison would, in time linear in the total length of the paths.

        A trie of the earlier paths keeps, per node, the first path ending there, the first path passing
        through it, and the first path leaving it through a map key and through a list index."""
        if len(paths) < 2:
            return
        root: list = [{}, None, None, None, None]  # children, first ending, first through, first via str, via int
        for j, p2 in enumerate(paths):
            want_conflict = "conflict" not in self.errors
            want_overlap = "overlap" not in self.errors
            best_conflict = best_overlap = None
            node = root
            for e in p2:
                if node[1] is not None and want_overlap:  # an earlier path is a prefix of this one
                    best_overlap = _first(best_overlap, node[1])
                if want_conflict:  # earlier paths that leave here through the other kind of step
                    best_conflict = _first(best_conflict, node[4] if isinstance(e, str) else node[3])
                child = node[0].get((isinstance(e, int), e))
                if child is None:
                    node = None
                    break
                node = child
            if node is not None and want_overlap:  # this path is a prefix of (or equal to) an earlier one
                best_overlap = _first(best_overlap, node[2])
            if best_conflict is not None and want_conflict:
                self._check_pair(paths[best_conflict], p2)
            if best_overlap is not None and want_overlap:
                self._check_pair(paths[best_overlap], p2)
            node = root
            for e in p2:
                slot = 4 if isinstance(e, int) else 3
                if node[slot] is None:
                    node[slot] = j
                if node[2] is None:
                    node[2] = j
                key = (isinstance(e, int), e)
                child = node[0].get(key)
                if child is None:
                    child = node[0][key] = [{}, None, None, None, None]
                node = child
            if node[1] is None:
                node[1] = j
            if node[2] is None:
                node[2] = j

    def _check_pair(self, p1: tuple, p2: tuple) -> None:
        for a, b in zip(p1, p2, strict=False):
            if isinstance(a, int) != isinstance(b, int):
                self.error(
                    "conflict",
                    "Two document paths conflict with each other; must remove or rewrite one of these paths; "
                    f"path one: {ast.path_str(p1)}, path two: {ast.path_str(p2)}",
                )
                return
            if a != b:
                return
        self.error(
            "overlap",
            "Two document paths overlap with each other; must remove or rewrite one of these paths; "
            f"path one: {ast.path_str(p1)}, path two: {ast.path_str(p2)}",
        )


def _first(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a < b else b


def resolve_condition(raw: RawNode, kind: str, names: dict | None, values: dict | None) -> tuple:
    """(Condition, used names, used values) for one request, or raise DynamoDB's error."""
    p = Resolver(kind, names, values)
    cond = p.r_condition(raw)
    p.raise_errors(_COND_ORDER)
    return cond, p.used_names, p.used_values



def resolve_update(raw: tuple, names: dict | None, values: dict | None) -> tuple:
    clauses, parse_errors = raw
    p = Resolver("UpdateExpression", names, values)
    p.errors.update(parse_errors)
    sets, removes, adds, deletes, paths = [], [], [], [], []
    for word, rp, rv in clauses:
        path = p.r_path(rp)
        paths.append(path)
        if word == "SET":
            sets.append((path, p.r_set_value(rv)))
        elif word == "REMOVE":
            removes.append(path)
        else:
            value = p.r_value(rv)
            t = value_type(value) if rv.name in p.values else ""
            allowed = ("N", "SS", "NS", "BS") if word == "ADD" else ("SS", "NS", "BS")
            if t and t not in allowed:
                p.error(
                    "operand",
                    "Incorrect operand type for operator or function; "
                    f"operator: {word}, operand type: {TYPE_WORDS.get(t, t)}",
                )
            (adds if word == "ADD" else deletes).append((path, value))
    p.check_overlaps(paths)
    p.raise_errors(_UPDATE_ORDER)
    plan = UpdatePlan(tuple(sets), tuple(removes), tuple(adds), tuple(deletes))
    return plan, p.used_names, p.used_values


def parse_projection_text(text: str, names: dict | None) -> tuple:
    p = Resolver("ProjectionExpression", names, None)
    paths = [p.r_path(r) for r in parse_projection_raw(text)]
    p.check_overlaps(paths)
    p.raise_errors(_PROJECTION_ORDER)
    return ast.Projection(tuple(paths)), p.used_names, p.used_values
