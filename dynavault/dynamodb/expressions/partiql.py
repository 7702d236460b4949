"""PartiQL for DynamoDB: lexer and statement parser (the subset DynamoDB documents, one table per statement).

    SELECT * | path, ... FROM "table" [WHERE condition]
    INSERT INTO "table" VALUE {'attr': value, ...}
    UPDATE "table" SET path = value [, ...] | REMOVE path | SET path = set_add(path, value) ...
        WHERE key = value [AND condition] [RETURNING ALL|MODIFIED OLD|NEW *]
    DELETE FROM "table" WHERE key = value [AND condition] [RETURNING ALL OLD *]
    EXISTS(SELECT ...) / NOT EXISTS(SELECT ...)        (condition checks, ExecuteTransaction only)

with ``?`` parameters bound while parsing. The result is a small tree (:class:`Statement` over :class:`Path`,
:class:`Value`, :class:`Call` and :class:`Binary`) that :mod:`dynavault.dynamodb.partiql` renders into the
DynamoDB expression language, so PartiQL conditions and updates evaluate exactly as ConditionExpression and
UpdateExpression do. Anything else (UPSERT, REPLACE, joins, DDL, ...) is DynamoDB's syntax error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dynavault.dynamodb.expressions.parser import MAX_LIST_INDEX
from dynavault.dynamodb.values import validate_attribute_value
from dynavault.errors import AWSError, validation
from dynavault.small_ints import small_int

MALFORMED = "Statement wasn't well formed, can't be processed: "
MSG_PARAMS = "Number of parameters in request and statement don't match."

_LEXEME = re.compile(
    r"""\s+|--[^\n]*|/\*.*?\*/
    |(?P<str>'(?:[^']|'')*')
    |(?P<qid>"(?:[^"]|"")*")
    |(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<id>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<op><<|>>|<=|>=|<>|!=|[-+*/=<>(),.\[\]{}:?;])""",
    re.S | re.X,
)


def malformed(detail: str) -> AWSError:
    return validation(MALFORMED + detail)


@dataclass
class Lexeme:
    """One lexical unit of a statement (a partition token is :class:`dynavault.storage.sealed.PartitionToken`)."""

    kind: str  # str | qid | num | id | op | end
    text: str


def lex(text: str) -> list[Lexeme]:
    out: list[Lexeme] = []
    pos = 0
    while pos < len(text):
        m = _LEXEME.match(text, pos)
        if m is None:
            raise malformed(f"Unexpected character: {text[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind is None:
            continue
        raw = m.group(kind)
        if kind == "str":
            out.append(Lexeme("str", raw[1:-1].replace("''", "'")))
        elif kind == "qid":
            out.append(Lexeme("qid", raw[1:-1].replace('""', '"')))
        else:
            out.append(Lexeme(kind, raw))
    while out and out[-1].kind == "op" and out[-1].text == ";":
        out.pop()
    out.append(Lexeme("end", ""))
    return out


# -- tree ---------------------------------------------------------------------------------------
@dataclass
class Path:
    parts: list  # str names and int indexes


@dataclass
class Value:
    value: dict  # an AttributeValue


@dataclass
class Call:
    name: str
    args: list


@dataclass
class Binary:
    op: str
    left: object
    right: object


@dataclass
class Statement:
    kind: str  # SELECT | INSERT | UPDATE | DELETE | EXISTS
    table: str
    index: str | None = None
    projection: list[Path] | None = None
    where: object | None = None
    value: dict | None = None
    sets: list = field(default_factory=list)  # (op, path, value-expr) with op SET | REMOVE | ADD | DELETE
    returning: str | None = None
    negated: bool = False


_RESERVED_STARTS = {"UPSERT", "REPLACE", "CREATE", "DROP", "ALTER", "BEGIN", "COMMIT", "ROLLBACK"}
COMPARISONS = {"=", "<>", "!=", "<", "<=", ">", ">="}


class _Parser:
    def __init__(self, text: str, params: list[dict]) -> None:
        self.lexemes = lex(text)
        self.i = 0
        self.params = params
        self.used = 0

    # token helpers
    def peek(self, ahead: int = 0) -> Lexeme:
        return self.lexemes[min(self.i + ahead, len(self.lexemes) - 1)]

    def next(self) -> Lexeme:
        t = self.peek()
        self.i += 1
        return t

    def is_kw(self, *words: str) -> bool:
        t = self.peek()
        return t.kind == "id" and t.text.upper() in words

    def is_op(self, *ops: str) -> bool:
        t = self.peek()
        return t.kind == "op" and t.text in ops

    def kw(self, word: str) -> None:
        if not self.is_kw(word):
            raise malformed(f"Expected {word}")
        self.i += 1

    def op(self, text: str) -> None:
        if not self.is_op(text):
            raise malformed(f"Expected {text!r}")
        self.i += 1

    def name(self) -> str:
        t = self.next()
        if t.kind in ("id", "qid"):
            return t.text
        raise malformed("Expected identifier")

    # statements
    def statement(self) -> Statement:
        if self.peek().kind == "end":
            raise malformed("Empty statement")
        head = self.peek().text.upper() if self.peek().kind == "id" else ""
        if head == "SELECT":
            st = self.select()
        elif head == "INSERT":
            st = self.insert()
        elif head == "UPDATE":
            st = self.update()
        elif head == "DELETE":
            st = self.delete()
        elif head in ("EXISTS", "NOT"):
            negated = head == "NOT"
            self.i += 1
            if negated:
                self.kw("EXISTS")
            self.op("(")
            st = self.select()
            self.op(")")
            st.kind, st.negated = "EXISTS", negated
        else:
            raise malformed("Expected data manipulation")
        if self.peek().kind != "end":
            raise malformed("Unexpected token after expression")
        return st

    def table(self, st: Statement) -> None:
        st.table = self.name()
        if self.is_op(".") and self.peek(1).kind in ("id", "qid"):
            self.i += 1
            st.index = self.name()
        if self.is_kw("AS") or (self.peek().kind in ("id", "qid") and not self.is_kw("WHERE", "SET", "REMOVE",
                                                                                     "RETURNING", "VALUE")):
            raise validation("Aliasing is not supported")

    def select(self) -> Statement:
        self.kw("SELECT")
        st = Statement("SELECT", "")
        if self.is_op("*"):
            self.i += 1
        else:
            st.projection = [self.path()]
            while self.is_op(","):
                self.i += 1
                st.projection.append(self.path())
        self.kw("FROM")
        self.table(st)
        if self.is_kw("WHERE"):
            self.i += 1
            st.where = self.expr()
        return st

    def insert(self) -> Statement:
        self.kw("INSERT")
        self.kw("INTO")
        st = Statement("INSERT", "")
        self.table(st)
        self.kw("VALUE")
        v = self.operand()
        if not isinstance(v, Value) or "M" not in v.value:
            raise malformed("Expected a tuple in VALUE")
        st.value = v.value["M"]
        return st

    def update(self) -> Statement:
        self.kw("UPDATE")
        st = Statement("UPDATE", "")
        self.table(st)
        while self.is_kw("SET", "REMOVE"):
            word = self.next().text.upper()
            while True:
                path = self.path()
                if word == "REMOVE":
                    st.sets.append(("REMOVE", path, None))
                else:
                    self.op("=")
                    rhs = self.value_expr()
                    if isinstance(rhs, Call) and rhs.name in ("set_add", "set_delete"):
                        st.sets.append(("ADD" if rhs.name == "set_add" else "DELETE", path, rhs.args[1]))
                    else:
                        st.sets.append(("SET", path, rhs))
                if not self.is_op(","):
                    break
                self.i += 1
        if not st.sets:
            raise malformed("Expected SET or REMOVE")
        self.where_and_returning(st)
        return st

    def delete(self) -> Statement:
        self.kw("DELETE")
        self.kw("FROM")
        st = Statement("DELETE", "")
        self.table(st)
        self.where_and_returning(st)
        return st

    def where_and_returning(self, st: Statement) -> None:
        if self.is_kw("WHERE"):
            self.i += 1
            st.where = self.expr()
        if self.is_kw("RETURNING"):
            self.i += 1
            which = self.name().upper()
            age = self.name().upper()
            self.op("*")
            if which not in ("ALL", "MODIFIED") or age not in ("OLD", "NEW"):
                raise malformed("Expected RETURNING ALL|MODIFIED OLD|NEW *")
            if st.kind == "DELETE" and (which, age) != ("ALL", "OLD"):
                raise validation("DELETE statement only supports RETURNING ALL OLD *")
            st.returning = f"{which}_{age}"

    # expressions
    def expr(self):
        left = self.and_expr()
        while self.is_kw("OR"):
            self.i += 1
            left = Binary("OR", left, self.and_expr())
        return left

    def and_expr(self):
        left = self.not_expr()
        while self.is_kw("AND"):
            self.i += 1
            left = Binary("AND", left, self.not_expr())
        return left

    def not_expr(self):
        if self.is_kw("NOT"):
            self.i += 1
            return Binary("NOT", self.not_expr(), None)
        return self.predicate()

    def predicate(self):
        if self.is_op("("):
            self.i += 1
            inner = self.expr()
            self.op(")")
            return inner
        left = self.value_expr()
        if isinstance(left, Call) and left.name in ("begins_with", "contains", "attribute_exists",
                                                    "attribute_not_exists", "attribute_type"):
            return left
        if self.is_op(*COMPARISONS):
            op = self.next().text
            return Binary("<>" if op == "!=" else op, left, self.value_expr())
        if self.is_kw("BETWEEN"):
            self.i += 1
            lo = self.value_expr()
            self.kw("AND")
            return Binary("BETWEEN", left, (lo, self.value_expr()))
        if self.is_kw("IN"):
            self.i += 1
            closing = "]" if self.is_op("[") else ")"
            self.op("[" if closing == "]" else "(")
            opts = [self.value_expr()]
            while self.is_op(","):
                self.i += 1
                opts.append(self.value_expr())
            self.op(closing)
            return Binary("IN", left, opts)
        if self.is_kw("IS"):
            self.i += 1
            neg = False
            if self.is_kw("NOT"):
                self.i += 1
                neg = True
            what = self.name().upper()
            if what not in ("MISSING", "NULL"):
                raise malformed("Expected MISSING or NULL")
            return Binary("IS", left, (what, neg))
        raise malformed("Expected a comparison")

    def value_expr(self):
        left = self.operand()
        while self.is_op("+", "-"):
            op = self.next().text
            left = Binary(op, left, self.operand())
        return left

    def path(self) -> Path:
        parts: list = [self.name()]
        while True:
            if self.is_op(".") and self.peek(1).kind in ("id", "qid"):
                self.i += 1
                parts.append(self.name())
            elif self.is_op("["):
                self.i += 1
                t = self.next()
                index = small_int(t.text, 10) if t.kind == "num" else None
                if index is None or index > MAX_LIST_INDEX:
                    raise malformed("Expected a list index")
                parts.append(index)
                self.op("]")
            else:
                return Path(parts)

    def operand(self):
        t = self.peek()
        if t.kind == "op" and t.text == "?":
            self.i += 1
            if self.used >= len(self.params):
                raise validation(MSG_PARAMS)
            v = self.params[self.used]
            self.used += 1
            return Value(v)
        if t.kind == "str":
            self.i += 1
            return Value({"S": t.text})
        if t.kind == "num" or (t.kind == "op" and t.text == "-" and self.peek(1).kind == "num"):
            sign = ""
            if t.kind == "op":
                self.i += 1
                sign = "-"
            return Value({"N": sign + self.next().text})
        if t.kind == "op" and t.text == "[":
            self.i += 1
            vals = []
            while not self.is_op("]"):
                vals.append(self._literal())
                if not self.is_op(","):
                    break
                self.i += 1
            self.op("]")
            return Value({"L": vals})
        if t.kind == "op" and t.text == "{":
            self.i += 1
            m = {}
            while not self.is_op("}"):
                k = self.next()
                if k.kind != "str":
                    raise malformed("Expected a string key in a tuple")
                self.op(":")
                m[k.text] = self._literal()
                if not self.is_op(","):
                    break
                self.i += 1
            self.op("}")
            return Value({"M": m})
        if t.kind == "op" and t.text == "<<":
            self.i += 1
            members = []
            while not self.is_op(">>"):
                v = self.operand()
                if not isinstance(v, Value):
                    raise validation("Unsupported data type in Bag")
                members.append(v.value)
                if not self.is_op(","):
                    break
                self.i += 1
            self.op(">>")
            return Value(_bag(members))
        if t.kind == "id":
            up = t.text.upper()
            if up in ("TRUE", "FALSE"):
                self.i += 1
                return Value({"BOOL": up == "TRUE"})
            if up == "NULL":
                self.i += 1
                return Value({"NULL": True})
            if up == "MISSING":
                raise malformed("MISSING is only allowed after IS")
            if self.peek(1).kind == "op" and self.peek(1).text == "(":
                name = t.text.lower()
                self.i += 2
                args = []
                while not self.is_op(")"):
                    args.append(self.value_expr())
                    if not self.is_op(","):
                        break
                    self.i += 1
                self.op(")")
                return Call(name, args)
        if t.kind in ("id", "qid"):
            return self.path()
        raise malformed("Expected an expression")

    def _literal(self) -> dict:
        v = self.operand()
        if not isinstance(v, Value):
            raise malformed("Expected a literal")
        return v.value


def _bag(members: list[dict]) -> dict:
    if not members:
        raise validation("Empty bags are not supported")
    kinds = {next(iter(m)) for m in members}
    if kinds == {"S"}:
        vals = [m["S"] for m in members]
        t = "SS"
    elif kinds == {"N"}:
        vals = [m["N"] for m in members]
        t = "NS"
    elif kinds == {"B"}:
        vals = [m["B"] for m in members]
        t = "BS"
    else:
        raise validation("DynamoDB only supports either numbers or strings in bags")
    if len(set(vals)) != len(vals):
        raise validation("Input collection contains duplicates")
    return {t: vals}


def parse_statement(text: str, params: list[dict] | None) -> Statement:
    params = params or []
    for i, v in enumerate(params):
        validate_attribute_value(v, f"[{i}]")
    first = re.match(r"\s*([A-Za-z]+)", text or "")
    if first and first.group(1).upper() in _RESERVED_STARTS:
        raise malformed(f"Unsupported operation {first.group(1).upper()}")
    p = _Parser(text, params)
    st = p.statement()
    if p.used != len(params):
        raise validation(MSG_PARAMS)
    return st

