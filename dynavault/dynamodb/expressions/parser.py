"""Recursive-descent parsers for DynamoDB's expression languages.

Parsing is two passes: the grammar builds a raw tree (names and placeholders unresolved) and raises only syntax
errors; a checking pass then resolves ``#name`` / ``:value`` placeholders and builds the resolved tree of
``ast`` / ``update`` nodes, collecting the first error of each kind. DynamoDB reports semantic errors in a fixed
order of kinds (not in text order), so the collected errors are raised by that priority.
"""

from __future__ import annotations

from dynavault.dynamodb.expressions import ast
from dynavault.dynamodb.expressions.lexer import (
    ATTR_NAME,
    ATTR_VALUE,
    BAD,
    EOF,
    INT,
    NAME,
    OP,
    Token,
    tokenize,
)
from dynavault.dynamodb.expressions.reserved import is_reserved
from dynavault.dynamodb.expressions.update import Arith, IfNotExists, ListAppend, UpdatePlan
from dynavault.dynamodb.values import TYPES, compare, value_type
from dynavault.errors import AWSError, validation

COMPARATORS = frozenset({"=", "<>", "<", "<=", ">", ">="})
_COND_KEYWORDS = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN"})
_UPDATE_KEYWORDS = frozenset({"SET", "REMOVE", "ADD", "DELETE"})
_COND_FUNCTIONS = {
    "attribute_exists": 1,
    "attribute_not_exists": 1,
    "attribute_type": 2,
    "begins_with": 2,
    "contains": 2,
    "size": 1,
}
_UPDATE_FUNCTIONS = {"if_not_exists": 2, "list_append": 2}
_TYPE_WORDS = {"S": "STRING", "N": "NUMBER", "B": "BINARY", "NULL": "NULL", "BOOL": "BOOLEAN", "L": "LIST", "M": "MAP"}
MAX_IN_OPERANDS = 100
# DynamoDB's documented expression limits (Constraints: "Expression parameters").
MAX_EXPRESSION_BYTES = 4096
MAX_OPERATORS = 300
MAX_PATH_DEPTH = 32
# Nesting of parentheses. The grammar recurses a few frames per level, so this bounds the parser's stack;
# it is far beyond what any expression needs (each non-redundant level holds an operator).
MAX_PAREN_DEPTH = 100

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


class _SyntaxError(Exception):
    pass


# ---------------------------------------------------------------------------------------------- raw tree


class _Raw:
    __slots__ = ("paren",)

    def __init__(self) -> None:
        self.paren = 0


class RPath(_Raw):
    __slots__ = ("elems",)  # ("n", word) | ("#", placeholder) | int

    def __init__(self, elems: list) -> None:
        super().__init__()
        self.elems = elems


class RValue(_Raw):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class RFunc(_Raw):
    __slots__ = ("name", "args")

    def __init__(self, name: str, args: list) -> None:
        super().__init__()
        self.name = name
        self.args = args


class RNode(_Raw):
    """Compare / BETWEEN / IN / AND / OR / NOT / arithmetic: ``op`` and its ``args``."""

    __slots__ = ("op", "args")

    def __init__(self, op: str, args: list) -> None:
        super().__init__()
        self.op = op
        self.args = args


# ---------------------------------------------------------------------------------------------- parser


class Parser:
    def __init__(self, text: str, kind: str, names: dict | None, values: dict | None) -> None:
        self.text = text
        self.kind = kind
        self.toks: list[Token] = []  # filled by run(), after the size limit is checked
        self.pos = 0
        self.furthest = 0
        self.names = names or {}
        self.values = values or {}
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()
        self.errors: dict[str, str] = {}

    # -- token helpers
    def peek(self, k: int = 0) -> Token:
        i = self.pos + k
        return self.toks[i] if i < len(self.toks) else self.toks[-1]

    def advance(self) -> Token:
        t = self.toks[self.pos]
        if t.kind != EOF:
            self.pos += 1
        return t

    def fail(self) -> None:
        self.furthest = max(self.furthest, self.pos)
        raise _SyntaxError()

    def at_op(self, text: str) -> bool:
        t = self.toks[self.pos]
        return t.kind == OP and t.text == text

    def expect_op(self, text: str) -> None:
        if not self.at_op(text):
            self.fail()
        self.pos += 1

    def at_word(self, word: str) -> bool:
        return self.toks[self.pos].is_word(word)

    def syntax_error(self) -> AWSError:
        i = self.furthest
        tok = self.toks[i]
        start = self.toks[i - 1].start if i > 0 else tok.start
        if tok.kind == EOF:
            end = len(self.text)
        else:
            nxt = self.toks[i + 1]
            end = nxt.end if nxt.kind != EOF else tok.end
        return validation(
            f'Invalid {self.kind}: Syntax error; token: "{tok.text}", near: "{self.text[start:end]}"'
        )

    def error(self, category: str, message: str) -> None:
        self.errors.setdefault(category, message)

    def raise_errors(self, order: tuple) -> None:
        if not self.errors:
            return
        for cat in order:
            msg = self.errors.get(cat)
            if msg is not None:
                raise validation(f"Invalid {self.kind}: {msg}")

    def run(self, rule, operators: str = ""):  # noqa: ANN001, ANN201 - internal
        """Parse the whole text with ``rule``; ``operators`` is "cond" or "update" to enforce the operator limit."""
        text = self.text
        if text == "":
            raise validation(f"Invalid {self.kind}: The expression can not be empty;")
        # At most 4 bytes per character: short texts need no encoding to be known within the limit.
        size = len(text) if len(text) * 4 <= MAX_EXPRESSION_BYTES else len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_EXPRESSION_BYTES:
            raise validation(
                f"Invalid {self.kind}: Expression size has exceeded the maximum allowed size; expression size: {size}"
            )
        self.toks = tokenize(text)
        if operators:
            self.check_counts(operators)
        try:
            raw = rule()
            if self.peek().kind != EOF:
                self.fail()
        except _SyntaxError:
            raise self.syntax_error() from None
        except RecursionError:
            # Unreachable within the limits above; a guard so no input can turn into a 500.
            raise validation(f"Invalid {self.kind}: The expression has redundant parentheses;") from None
        return raw

    def check_counts(self, operators: str) -> None:
        """One linear pass over the tokens: DynamoDB's operator limit and our parenthesis nesting bound.

        Checked before parsing so the recursive grammar only ever sees bounded nesting."""
        count = depth = max_depth = betweens = 0
        toks = self.toks
        cond = operators == "cond"
        for i, t in enumerate(toks):
            k = t.kind
            if k == OP:
                x = t.text
                if x == "(":
                    depth += 1
                    if depth > max_depth:
                        max_depth = depth
                elif x == ")":
                    depth -= 1
                elif (x in COMPARATORS) if cond else (x == "+" or x == "-"):
                    count += 1
            elif k == NAME:
                nxt = toks[i + 1]
                word = t.text.upper()
                if cond and word in _COND_KEYWORDS:
                    count += 1
                    betweens += word == "BETWEEN"
                elif nxt.kind == OP and nxt.text == "(" and word not in _UPDATE_KEYWORDS:
                    count += 1  # a function call
        count -= betweens  # BETWEEN's AND is part of BETWEEN, not a second operator
        if count > MAX_OPERATORS:
            raise validation(f"Invalid {self.kind}: The expression contains too many operators; operator count: {count}")
        if max_depth > MAX_PAREN_DEPTH:
            raise validation(f"Invalid {self.kind}: The expression has redundant parentheses;")

    # -- shared grammar
    def path(self, keywords: frozenset) -> RPath:
        t = self.peek()
        if t.kind == NAME and t.text.upper() not in keywords:
            elems: list = [("n", t.text)]
        elif t.kind == ATTR_NAME:
            elems = [("#", t.text)]
        else:
            self.fail()
        self.advance()
        while True:
            if self.at_op("."):
                self.advance()
                t = self.peek()
                if t.kind == NAME:
                    elems.append(("n", t.text))
                elif t.kind == ATTR_NAME:
                    elems.append(("#", t.text))
                else:
                    self.fail()
                self.advance()
            elif self.at_op("["):
                self.advance()
                t = self.peek()
                if t.kind != INT:
                    self.fail()
                self.advance()
                self.expect_op("]")
                elems.append(int(t.text))
            else:
                if len(elems) > MAX_PATH_DEPTH:
                    raise validation(
                        f"Invalid {self.kind}: The document path has too many nesting levels; "
                        f"nesting levels: {len(elems)}"
                    )
                return RPath(elems)

    # -- condition grammar: OR < AND < NOT < comparison; parentheses anywhere
    def cond_or(self) -> _Raw:
        left = self.cond_and()
        while self.at_word("OR"):
            self.advance()
            left = RNode("OR", [left, self.cond_and()])
        return left

    def cond_and(self) -> _Raw:
        left = self.cond_not()
        while self.at_word("AND"):
            self.advance()
            left = RNode("AND", [left, self.cond_not()])
        return left

    def cond_not(self) -> _Raw:
        if self.at_word("NOT"):
            self.advance()
            return RNode("NOT", [self.cond_not()])
        return self.cond_primary()

    def _continues_comparison(self) -> bool:
        t = self.peek()
        return (t.kind == OP and t.text in COMPARATORS) or t.is_word("BETWEEN") or t.is_word("IN")

    def cond_primary(self) -> _Raw:
        if self.at_op("("):
            # "(" opens either a parenthesized condition or a parenthesized operand: try the former first.
            save = self.pos
            try:
                self.advance()
                inner = self.cond_or()
                self.expect_op(")")
                if not self._continues_comparison():
                    inner.paren += 1
                    return inner
            except _SyntaxError:
                pass
            self.pos = save
        return self.comparison()

    def comparison(self) -> _Raw:
        a = self.operand()
        t = self.peek()
        if t.kind == OP and t.text in COMPARATORS:
            self.advance()
            return RNode(t.text, [a, self.operand()])
        if t.is_word("BETWEEN"):
            self.advance()
            lo = self.operand()
            if not self.at_word("AND"):
                self.fail()
            self.advance()
            return RNode("BETWEEN", [a, lo, self.operand()])
        if t.is_word("IN"):
            self.advance()
            self.expect_op("(")
            opts = [self.operand()]
            while self.at_op(","):
                self.advance()
                opts.append(self.operand())
            self.expect_op(")")
            return RNode("IN", [a, *opts])
        if isinstance(a, RFunc):
            return a
        self.fail()
        raise AssertionError("unreachable")

    def operand(self) -> _Raw:
        t = self.peek()
        if t.kind == OP and t.text == "(":
            self.advance()
            o = self.operand()
            self.expect_op(")")
            o.paren += 1
            return o
        if t.kind == ATTR_VALUE:
            self.advance()
            return RValue(t.text)
        if t.kind == NAME and t.text.upper() not in _COND_KEYWORDS:
            nxt = self.peek(1)
            if nxt.kind == OP and nxt.text == "(":
                self.pos += 2
                args = [self.operand()]
                while self.at_op(","):
                    self.advance()
                    args.append(self.operand())
                self.expect_op(")")
                return RFunc(t.text, args)
            return self.path(_COND_KEYWORDS)
        if t.kind == ATTR_NAME:
            return self.path(_COND_KEYWORDS)
        self.fail()
        raise AssertionError("unreachable")

    # -- update grammar
    def update_clauses(self) -> list:
        clauses = []
        seen: set[str] = set()
        while self.peek().kind != EOF:
            t = self.peek()
            word = t.text.upper() if t.kind == NAME else ""
            if word not in _UPDATE_KEYWORDS:
                self.fail()
            self.advance()
            if word in seen:
                self.error("section", f'The "{word}" section can only be used once in an update expression;')
            seen.add(word)
            while True:
                if word == "SET":
                    p = self.path(_UPDATE_KEYWORDS)
                    self.expect_op("=")
                    clauses.append((word, p, self.set_value()))
                elif word == "REMOVE":
                    clauses.append((word, self.path(_UPDATE_KEYWORDS), None))
                else:
                    p = self.path(_UPDATE_KEYWORDS)
                    v = self.peek()
                    if v.kind != ATTR_VALUE:
                        self.fail()
                    self.advance()
                    clauses.append((word, p, RValue(v.text)))
                if not self.at_op(","):
                    break
                self.advance()
        if not clauses:
            self.fail()
        return clauses

    def set_value(self) -> _Raw:
        a = self.set_operand()
        t = self.peek()
        if t.kind == OP and t.text in ("+", "-"):
            self.advance()
            return RNode(t.text, [a, self.set_operand()])
        return a

    def set_operand(self) -> _Raw:
        t = self.peek()
        if t.kind == OP and t.text == "(":
            self.advance()
            v = self.set_value()
            self.expect_op(")")
            return v
        if t.kind == ATTR_VALUE:
            self.advance()
            return RValue(t.text)
        if t.kind == NAME and t.text.upper() not in _UPDATE_KEYWORDS:
            nxt = self.peek(1)
            if nxt.kind == OP and nxt.text == "(":
                self.pos += 2
                args = [self.set_operand()]
                while self.at_op(","):
                    self.advance()
                    args.append(self.set_operand())
                self.expect_op(")")
                return RFunc(t.text, args)
            return self.path(_UPDATE_KEYWORDS)
        if t.kind == ATTR_NAME:
            return self.path(_UPDATE_KEYWORDS)
        self.fail()
        raise AssertionError("unreachable")

    # -- projection grammar
    def projection_paths(self) -> list[RPath]:
        paths = [self.path(frozenset())]
        while self.at_op(","):
            self.advance()
            paths.append(self.path(frozenset()))
        return paths

    # ------------------------------------------------------------------------------------------ resolving
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

    def check_parens(self, node: _Raw) -> None:
        if node.paren > 1:
            self.error("parens", "The expression has redundant parentheses;")

    # -- conditions
    def r_condition(self, node: _Raw) -> ast.Condition:
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
            return ast.Compare(op, args[0], args[1])
        if op == "BETWEEN":
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

    def r_operand(self, node: _Raw) -> ast.Operand:
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
            if node.name in _COND_FUNCTIONS:
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
        if name not in _COND_FUNCTIONS:
            self.error("unknown_function", f"Invalid function name; function: {name}")
            for a in f.args:
                self.r_operand(a)
            return dummy
        if name == "size":
            self.error("misused_function", "The function is not allowed to be used this way in an expression; function: size")
            return dummy
        args = [self.r_operand(a) for a in f.args]
        n = _COND_FUNCTIONS[name]
        if len(args) != n:
            self.error(
                "operand_count",
                "Incorrect number of operands for operator or function; "
                f"operator or function: {name}, number of operands: {len(args)}",
            )
            return dummy
        self.check_distinct(name, args)
        if name in ("attribute_exists", "attribute_not_exists", "attribute_type"):
            if not isinstance(args[0], ast.PathOp):
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
        return ast.Contains(args[0], args[1])

    # -- updates
    def r_set_value(self, node: _Raw) -> ast.Operand:
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
        if name not in _UPDATE_FUNCTIONS:
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


# ---------------------------------------------------------------------------------------------- entry points


# Parsing (syntax and limits) depends on the text alone, so its raw tree can be cached and shared; resolving
# binds one request's names and values and makes every check that depends on them.


def parse_condition_raw(text: str, kind: str) -> _Raw:
    """Syntax tree of a condition / filter / key condition, or raise DynamoDB's syntax or limit error."""
    p = Parser(text, kind, None, None)
    return p.run(p.cond_or, "cond")


def resolve_condition(raw: _Raw, kind: str, names: dict | None, values: dict | None) -> tuple:
    """(Condition, used names, used values) for one request, or raise DynamoDB's error."""
    p = Parser("", kind, names, values)
    cond = p.r_condition(raw)
    p.raise_errors(_COND_ORDER)
    return cond, p.used_names, p.used_values


def parse_condition_text(text: str, kind: str, names: dict | None, values: dict | None) -> tuple:
    """(Condition, used names, used values) or raise DynamoDB's error."""
    return resolve_condition(parse_condition_raw(text, kind), kind, names, values)


def parse_update_raw(text: str) -> tuple:
    """(clauses, errors found while parsing): a repeated section is reported in DynamoDB's order of kinds."""
    p = Parser(text, "UpdateExpression", None, None)
    clauses = p.run(p.update_clauses, "update")
    return clauses, dict(p.errors)


def resolve_update(raw: tuple, names: dict | None, values: dict | None) -> tuple:
    clauses, parse_errors = raw
    p = Parser("", "UpdateExpression", names, values)
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
                    f"operator: {word}, operand type: {_TYPE_WORDS.get(t, t)}",
                )
            (adds if word == "ADD" else deletes).append((path, value))
    p.check_overlaps(paths)
    p.raise_errors(_UPDATE_ORDER)
    plan = UpdatePlan(tuple(sets), tuple(removes), tuple(adds), tuple(deletes))
    return plan, p.used_names, p.used_values


def parse_update_text(text: str, names: dict | None, values: dict | None) -> tuple:
    return resolve_update(parse_update_raw(text), names, values)


def parse_projection_text(text: str, names: dict | None) -> tuple:
    p = Parser(text, "ProjectionExpression", names, None)
    raws = p.run(p.projection_paths)
    paths = [p.r_path(r) for r in raws]
    p.check_overlaps(paths)
    p.raise_errors(_PROJECTION_ORDER)
    return ast.Projection(tuple(paths)), p.used_names, p.used_values


__all__ = [
    "BAD",
    "parse_condition_raw",
    "parse_condition_text",
    "parse_projection_text",
    "parse_update_raw",
    "parse_update_text",
    "resolve_condition",
    "resolve_update",
]
