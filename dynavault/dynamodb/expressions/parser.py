"""Recursive-descent parsers for DynamoDB's expression languages.

Parsing is two passes: the grammar builds a raw tree (names and placeholders unresolved) and raises only syntax
errors; a checking pass then resolves ``#name`` / ``:value`` placeholders and builds the resolved tree of
``ast`` / ``update`` nodes, collecting the first error of each kind. DynamoDB reports semantic errors in a fixed
order of kinds (not in text order), so the collected errors are raised by that priority.
"""

from __future__ import annotations

from dynavault.dynamodb.expressions.lexer import (
    ATTR_NAME,
    ATTR_VALUE,
    BAD,
    EOF,
    INT,
    NAME,
    OP,
    Lexeme,
    tokenize,
)
from dynavault.errors import AWSError, validation
from dynavault.small_ints import small_int

COMPARATORS = frozenset({"=", "<>", "<", "<=", ">", ">="})
_COND_KEYWORDS = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN"})
_UPDATE_KEYWORDS = frozenset({"SET", "REMOVE", "ADD", "DELETE"})
COND_FUNCTIONS = {
    "attribute_exists": 1,
    "attribute_not_exists": 1,
    "attribute_type": 2,
    "begins_with": 2,
    "contains": 2,
    "size": 1,
}
UPDATE_FUNCTIONS = {"if_not_exists": 2, "list_append": 2}
TYPE_WORDS = {"S": "STRING", "N": "NUMBER", "B": "BINARY", "NULL": "NULL", "BOOL": "BOOLEAN", "L": "LIST", "M": "MAP"}
MAX_IN_OPERANDS = 100
# DynamoDB's documented expression limits (Constraints: "Expression parameters").
MAX_EXPRESSION_BYTES = 4096
MAX_OPERATORS = 300
MAX_PATH_DEPTH = 32
#: the largest list index DynamoDB accepts in a document path (one more is 'not within the allowable range')
MAX_LIST_INDEX = 4_294_967_294
# Nesting of parentheses. The grammar recurses a few frames per level, so this bounds the parser's stack;
# it is far beyond what any expression needs (each non-redundant level holds an operator).
MAX_PAREN_DEPTH = 100



class _SyntaxError(Exception):
    pass


# ---------------------------------------------------------------------------------------------- raw tree


class RawNode:
    __slots__ = ("paren",)

    def __init__(self) -> None:
        self.paren = 0


class RPath(RawNode):
    __slots__ = ("elems",)  # ("n", word) | ("#", placeholder) | int

    def __init__(self, elems: list) -> None:
        super().__init__()
        self.elems = elems


class RValue(RawNode):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class RFunc(RawNode):
    __slots__ = ("name", "args")

    def __init__(self, name: str, args: list) -> None:
        super().__init__()
        self.name = name
        self.args = args


class RNode(RawNode):
    """Compare / BETWEEN / IN / AND / OR / NOT / arithmetic: ``op`` and its ``args``."""

    __slots__ = ("op", "args")

    def __init__(self, op: str, args: list) -> None:
        super().__init__()
        self.op = op
        self.args = args


# ---------------------------------------------------------------------------------------------- parser


class Parser:
    """The grammar: text -> raw tree. Raises syntax and limit errors; records the few semantic errors only the
    grammar can see (a repeated update section) in ``errors`` for the resolver to report in order."""

    def __init__(self, text: str, kind: str) -> None:
        self.text = text
        self.kind = kind
        self.toks: list[Lexeme] = []  # filled by run(), after the size limit is checked
        self.pos = 0
        self.furthest = 0
        self.errors: dict[str, str] = {}

    # -- token helpers
    def peek(self, k: int = 0) -> Lexeme:
        i = self.pos + k
        return self.toks[i] if i < len(self.toks) else self.toks[-1]

    def advance(self) -> Lexeme:
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
                index = small_int(t.text, 10)
                if index is None or index > MAX_LIST_INDEX:
                    raise validation(f"Invalid {self.kind}: List index is not within the allowable range; "
                                     f"index: [{t.text}]")
                elems.append(index)
            else:
                if len(elems) > MAX_PATH_DEPTH:
                    raise validation(
                        f"Invalid {self.kind}: The document path has too many nesting levels; "
                        f"nesting levels: {len(elems)}"
                    )
                return RPath(elems)

    # -- condition grammar: OR < AND < NOT < comparison; parentheses anywhere
    def cond_or(self) -> RawNode:
        left = self.cond_and()
        while self.at_word("OR"):
            self.advance()
            left = RNode("OR", [left, self.cond_and()])
        return left

    def cond_and(self) -> RawNode:
        left = self.cond_not()
        while self.at_word("AND"):
            self.advance()
            left = RNode("AND", [left, self.cond_not()])
        return left

    def cond_not(self) -> RawNode:
        if self.at_word("NOT"):
            self.advance()
            return RNode("NOT", [self.cond_not()])
        return self.cond_primary()

    def _continues_comparison(self) -> bool:
        t = self.peek()
        return (t.kind == OP and t.text in COMPARATORS) or t.is_word("BETWEEN") or t.is_word("IN")

    def cond_primary(self) -> RawNode:
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

    def comparison(self) -> RawNode:
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

    def operand(self) -> RawNode:
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

    def set_value(self) -> RawNode:
        a = self.set_operand()
        t = self.peek()
        if t.kind == OP and t.text in ("+", "-"):
            self.advance()
            return RNode(t.text, [a, self.set_operand()])
        return a

    def set_operand(self) -> RawNode:
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


# ---------------------------------------------------------------------------------------------- entry points


# Parsing (syntax and limits) depends on the text alone, so its raw tree can be cached and shared; resolving
# (resolver.py) binds one request's names and values and makes every check that depends on them.


def parse_condition_raw(text: str, kind: str) -> RawNode:
    """Syntax tree of a condition / filter / key condition, or raise DynamoDB's syntax or limit error."""
    p = Parser(text, kind)
    return p.run(p.cond_or, "cond")


def parse_update_raw(text: str) -> tuple:
    """(clauses, errors found while parsing): a repeated section is reported in DynamoDB's order of kinds."""
    p = Parser(text, "UpdateExpression")
    clauses = p.run(p.update_clauses, "update")
    return clauses, dict(p.errors)


def parse_projection_raw(text: str) -> list[RPath]:
    p = Parser(text, "ProjectionExpression")
    return p.run(p.projection_paths)


__all__ = ["BAD", "RawNode", "RFunc", "RNode", "RPath", "RValue", "parse_condition_raw", "parse_projection_raw",
           "parse_update_raw"]
