"""PartiQL for DynamoDB: ExecuteStatement, BatchExecuteStatement, ExecuteTransaction.

The subset DynamoDB documents, on one table per statement:

    SELECT * | path, ... FROM "table" [WHERE condition]
    INSERT INTO "table" VALUE {'attr': value, ...}
    UPDATE "table" SET path = value [, ...] | REMOVE path | SET path = set_add(path, value) ...
        WHERE key = value [AND condition] [RETURNING ALL|MODIFIED OLD|NEW *]
    DELETE FROM "table" WHERE key = value [AND condition] [RETURNING ALL OLD *]
    EXISTS(SELECT ...) / NOT EXISTS(SELECT ...)        (condition checks, ExecuteTransaction only)

with ``?`` parameters. A statement is parsed into a small tree here, then *rendered* into the DynamoDB
expression language (``#n0.#n1 = :v0``) and handed to the ordinary expression parser, so PartiQL
conditions and updates evaluate exactly as ConditionExpression and UpdateExpression do. Writes go
through the shared engine in :mod:`.transactions` (one store transaction per request).
Anything else (UPSERT, REPLACE, joins, DDL, ...) is DynamoDB's syntax error.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation

from . import items as item_ops
from .catalog import TableMeta
from .expressions import (
    ExpressionContext,
    evaluate,
    parse_condition,
    parse_projection,
    parse_update,
    updated_attributes,
)
from .expressions import project as project_item
from .keys import key_of_item, key_of_request
from .transactions import (
    ActionsFailed,
    WriteAction,
    consumed,
    read_items,
    run_transaction,
    run_writes,
    table_cryptos,
    units_by_table,
)
from .values import canonical_item, item_size, validate_attribute_value, validate_item

if TYPE_CHECKING:
    from .service import DynamoDBService

MALFORMED = "Statement wasn't well formed, can't be processed: "
MSG_PARAMS = "Number of parameters in request and statement don't match."
MSG_KEY_EQ = "Where clause does not contain a mandatory equality on all key attributes"
MSG_MIXED = "ExecuteTransaction API does not support both read and write operations in the same request."
PAGE_BYTES = 1024 * 1024

_TOKEN = re.compile(
    r"""\s+|--[^\n]*|/\*.*?\*/
    |(?P<str>'(?:[^']|'')*')
    |(?P<qid>"(?:[^"]|"")*")
    |(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<id>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<op><<|>>|<=|>=|<>|!=|[-+*/=<>(),.\[\]{}:?;])""",
    re.S | re.X,
)


def _malformed(detail: str) -> AWSError:
    return validation(MALFORMED + detail)


@dataclass
class Tok:
    kind: str  # str | qid | num | id | op | end
    text: str


def _lex(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _malformed(f"Unexpected character: {text[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind is None:
            continue
        raw = m.group(kind)
        if kind == "str":
            out.append(Tok("str", raw[1:-1].replace("''", "'")))
        elif kind == "qid":
            out.append(Tok("qid", raw[1:-1].replace('""', '"')))
        else:
            out.append(Tok(kind, raw))
    while out and out[-1].kind == "op" and out[-1].text == ";":
        out.pop()
    out.append(Tok("end", ""))
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
_CMP = {"=", "<>", "!=", "<", "<=", ">", ">="}


class _Parser:
    def __init__(self, text: str, params: list[dict]) -> None:
        self.toks = _lex(text)
        self.i = 0
        self.params = params
        self.used = 0

    # token helpers
    def peek(self, ahead: int = 0) -> Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def next(self) -> Tok:
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
            raise _malformed(f"Expected {word}")
        self.i += 1

    def op(self, text: str) -> None:
        if not self.is_op(text):
            raise _malformed(f"Expected {text!r}")
        self.i += 1

    def name(self) -> str:
        t = self.next()
        if t.kind in ("id", "qid"):
            return t.text
        raise _malformed("Expected identifier")

    # statements
    def statement(self) -> Statement:
        if self.peek().kind == "end":
            raise _malformed("Empty statement")
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
            raise _malformed("Expected data manipulation")
        if self.peek().kind != "end":
            raise _malformed("Unexpected token after expression")
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
            raise _malformed("Expected a tuple in VALUE")
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
            raise _malformed("Expected SET or REMOVE")
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
                raise _malformed("Expected RETURNING ALL|MODIFIED OLD|NEW *")
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
        if self.is_op(*_CMP):
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
                raise _malformed("Expected MISSING or NULL")
            return Binary("IS", left, (what, neg))
        raise _malformed("Expected a comparison")

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
                if t.kind != "num" or not t.text.isdigit():
                    raise _malformed("Expected a list index")
                parts.append(int(t.text))
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
                    raise _malformed("Expected a string key in a tuple")
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
                raise _malformed("MISSING is only allowed after IS")
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
        raise _malformed("Expected an expression")

    def _literal(self) -> dict:
        v = self.operand()
        if not isinstance(v, Value):
            raise _malformed("Expected a literal")
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
        raise _malformed(f"Unsupported operation {first.group(1).upper()}")
    p = _Parser(text, params)
    st = p.statement()
    if p.used != len(params):
        raise validation(MSG_PARAMS)
    return st


# -- rendering into the DynamoDB expression language --------------------------------------------
class _Render:
    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, dict] = {}

    def path(self, p: Path) -> str:
        out = ""
        for part in p.parts:
            if isinstance(part, int):
                out += f"[{part}]"
            else:
                key = f"#n{len(self.names)}"
                self.names[key] = part
                out += ("." if out else "") + key
        return out

    def value(self, v: dict) -> str:
        key = f":v{len(self.values)}"
        self.values[key] = v
        return key

    def operand(self, node) -> str:
        if isinstance(node, Path):
            return self.path(node)
        if isinstance(node, Value):
            return self.value(node.value)
        if isinstance(node, Binary) and node.op in ("+", "-"):
            return f"{self.operand(node.left)} {node.op} {self.operand(node.right)}"
        if isinstance(node, Call) and node.name in ("size", "list_append", "if_not_exists"):
            return f"{node.name}({', '.join(self.operand(a) for a in node.args)})"
        raise _malformed("Unsupported expression")

    def cond(self, node) -> str:
        if isinstance(node, Call):
            return f"{node.name}({', '.join(self.operand(a) for a in node.args)})"
        if not isinstance(node, Binary):
            raise _malformed("Expected a condition")
        if node.op in ("AND", "OR"):
            return f"({self.cond(node.left)}) {node.op} ({self.cond(node.right)})"
        if node.op == "NOT":
            return f"NOT ({self.cond(node.left)})"
        if node.op in _CMP:
            return f"{self.operand(node.left)} {node.op} {self.operand(node.right)}"
        if node.op == "BETWEEN":
            lo, hi = node.right
            return f"{self.operand(node.left)} BETWEEN {self.operand(lo)} AND {self.operand(hi)}"
        if node.op == "IN":
            return f"{self.operand(node.left)} IN ({', '.join(self.operand(o) for o in node.right)})"
        if node.op == "IS":
            what, neg = node.right
            target = self.operand(node.left)
            if what == "MISSING":
                return f"attribute_{'exists' if neg else 'not_exists'}({target})"
            test = f"attribute_type({target}, {self.value({'S': 'NULL'})})"
            return f"NOT ({test})" if neg else test
        raise _malformed("Unsupported condition")

    def context(self) -> ExpressionContext:
        return ExpressionContext(self.names or None, self.values or None)


def _condition(where):
    if where is None:
        return None
    r = _Render()
    text = r.cond(where)
    ctx = r.context()
    cond = parse_condition(text, ctx)
    return cond


def _conjuncts(node) -> list:
    if isinstance(node, Binary) and node.op == "AND":
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node] if node is not None else []


def _key_equalities(meta: TableMeta, where) -> dict:
    """Attribute values the WHERE pins the key attributes to (top-level ``key = value`` conjuncts)."""
    out: dict = {}
    for c in _conjuncts(where):
        if not (isinstance(c, Binary) and c.op == "="):
            continue
        for a, b in ((c.left, c.right), (c.right, c.left)):
            if isinstance(a, Path) and len(a.parts) == 1 and a.parts[0] in meta.key_names and isinstance(b, Value):
                name = a.parts[0]
                if name in out and out[name] != b.value:
                    out[name] = None  # contradictory: no item can match
                else:
                    out.setdefault(name, b.value)
    return out


def _is_key_eq(meta: TableMeta, c) -> bool:
    if not (isinstance(c, Binary) and c.op == "="):
        return False
    return any(isinstance(a, Path) and len(a.parts) == 1 and a.parts[0] in meta.key_names and isinstance(b, Value)
               for a, b in ((c.left, c.right), (c.right, c.left)))


def _rest_condition(meta: TableMeta, where):
    """The WHERE without its key equalities: a write's own condition (a DELETE of a missing item is fine)."""
    rest = [c for c in _conjuncts(where) if not _is_key_eq(meta, c)]
    if not rest:
        return None
    node = rest[0]
    for c in rest[1:]:
        node = Binary("AND", node, c)
    return _condition(node)


def _full_key(meta: TableMeta, where) -> dict | None:
    eq = _key_equalities(meta, where)
    if set(eq) != meta.key_names:
        return None
    for name, v in eq.items():
        if v is None or next(iter(v)) != meta.attribute_types[name]:
            raise validation("Key attribute's data type should match its data type in table's schema")
    return eq


def _hash_bytes(meta: TableMeta, hv: dict) -> bytes:
    # keys.py has no public helper for a lone partition key value (see the issue report)
    from .keyorder import encode_key_value
    from .keys import _check_key_value

    return encode_key_value(meta.hash_type, _check_key_value(meta.hash_key, meta.hash_type, hv, is_hash=True,
                                                             from_item=False))


def _table(svc: DynamoDBService, caller: Caller, st: Statement) -> TableMeta:
    meta = svc.data_table(caller, st.table)
    if st.index is not None:
        raise validation(f"The table does not have the specified index: {st.index}")
    return meta


# -- statements as write actions ----------------------------------------------------------------
def _write_action(svc: DynamoDBService, caller: Caller, st: Statement, rv_on_fail: str) -> WriteAction:
    meta = _table(svc, caller, st)
    if st.kind == "INSERT":
        if st.where is not None:
            raise _malformed("INSERT takes no WHERE")
        item = st.value or {}
        validate_item(item)
        hkey, skey, key = key_of_item(meta, item)
        return WriteAction("Put", meta, hkey, skey, key, item=canonical_item(item), must_not_exist=True)
    key = _full_key(meta, st.where)
    if key is None:
        raise validation(MSG_KEY_EQ)
    hkey, skey, key = key_of_request(meta, key)
    cond = _rest_condition(meta, st.where)
    if st.kind == "DELETE":
        return WriteAction("Delete", meta, hkey, skey, key, cond=cond, return_on_failure=rv_on_fail)
    if st.kind == "EXISTS":
        # evaluated on the item or None: the key equalities make a missing item fail EXISTS
        cond = _condition(Binary("NOT", st.where, None) if st.negated else st.where)
        return WriteAction("ConditionCheck", meta, hkey, skey, key, cond=cond)
    # UPDATE: SET/REMOVE/ADD/DELETE clauses rendered into one UpdateExpression
    r = _Render()
    clauses: dict[str, list[str]] = {}
    for op, path, rhs in st.sets:
        target = r.path(path)
        if op == "SET":
            clauses.setdefault("SET", []).append(f"{target} = {r.operand(rhs)}")
        elif op == "REMOVE":
            clauses.setdefault("REMOVE", []).append(target)
        else:
            clauses.setdefault(op, []).append(f"{target} {r.operand(rhs)}")
    text = " ".join(f"{op} {', '.join(parts)}" for op, parts in clauses.items())
    ctx = r.context()
    plan = parse_update(text, ctx)
    return WriteAction("Update", meta, hkey, skey, key, plan=plan, cond=cond, must_exist=True,
                       return_on_failure=rv_on_fail)


def _single_error(reason: dict) -> AWSError:
    code = reason["Code"]
    if code == "ConditionalCheckFailed":
        extra = {"Item": reason["Item"]} if "Item" in reason else None
        return AWSError("ConditionalCheckFailedException", reason.get("Message"), extra=extra)
    if code == "DuplicateItem":
        return AWSError("DuplicateItemException", reason.get("Message"))
    if code == "TransactionConflict":
        return AWSError("TransactionConflictException", reason.get("Message"))
    return validation(reason.get("Message") or "")


def _returning(st: Statement, a: WriteAction) -> list[dict]:
    if st.returning is None:
        return []
    if st.returning == "ALL_OLD":
        return [a.old] if a.old is not None else []
    if st.returning == "ALL_NEW":
        return [a.new] if a.new is not None else []
    attrs = updated_attributes(a.plan, a.old, a.new, "UPDATED_OLD" if st.returning == "MODIFIED_OLD"
                               else "UPDATED_NEW") if a.plan is not None else None
    return [attrs] if attrs else []


# -- SELECT ---------------------------------------------------------------------------------------
def _projection(st: Statement):
    if st.projection is None:
        return None
    r = _Render()
    text = ", ".join(r.path(p) for p in st.projection)
    return parse_projection(text, r.context())


def _encode_next(statement: str, token_raw: bytes, skey: bytes) -> str:
    doc = {"s": hashlib.sha256(statement.encode()).hexdigest()[:16], "t": token_raw.hex(),
           "k": base64.b64encode(skey).decode()}
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode()


def _decode_next(statement: str, text: str) -> tuple[bytes, bytes]:
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(text.encode()))
        if doc["s"] != hashlib.sha256(statement.encode()).hexdigest()[:16]:
            raise ValueError
        return bytes.fromhex(doc["t"]), base64.b64decode(doc["k"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise validation("Invalid NextToken") from None


def _select(svc: DynamoDBService, caller: Caller, st: Statement, p: dict) -> dict:
    from dynavault.storage.sealed import Token

    meta = _table(svc, caller, st)
    cond = _condition(st.where)
    proj = _projection(st)
    eq = _key_equalities(meta, st.where)
    crypto = svc.crypto(caller, meta)
    consistent = bool(p.get("ConsistentRead"))
    limit = p.get("Limit")
    statement = p.get("Statement") or ""
    after = _decode_next(statement, p["NextToken"]) if p.get("NextToken") else None

    def rows(r):
        """(token raw, sort key bytes, item) in storage order read through ``r``, after the NextToken position."""
        def partition(token, lo=None):
            for skey, raw in svc.trees.range(r, crypto.codec, meta.id_bytes, 0, token, lo=lo,
                                             lo_inclusive=lo is None):
                yield token.raw, skey, orjson.loads(raw)

        if meta.hash_key in eq:
            hv = eq[meta.hash_key]
            if hv is None or next(iter(hv)) != meta.hash_type:
                return
            token = crypto.token(0, _hash_bytes(meta, hv))
            if after is not None and after[0] != token.raw:
                raise validation("Invalid NextToken")
            yield from partition(token, after[1] if after else None)
            return
        if after is not None:
            # finish the partition the last page stopped in, then go on with the next tokens
            yield from partition(Token(after[0]), after[1])
        for token in svc.trees.tokens(r, crypto.codec, meta.id_bytes, 0, after=Token(after[0]) if after else None):
            yield from partition(token)

    items: list[dict] = []
    scanned = 0
    size = 0
    last = None
    more = False
    with svc.kv.snapshot() as r:  # one consistent state per page, without the write lock
        for token_raw, skey, item in rows(r):
            if (limit is not None and scanned >= limit) or size >= PAGE_BYTES:
                more = True
                break
            scanned += 1
            size += item_size(item)
            last = (token_raw, skey)
            if cond is None or evaluate(cond, item):
                items.append(project_item(proj, item) if proj is not None else item)
    out: dict = {"Items": items}
    if more and last is not None:
        out["NextToken"] = _encode_next(statement, *last)
    cc = item_ops.capacity(meta, p.get("ReturnConsumedCapacity"), item_ops.read_units(size, consistent),
                           write=False)
    if cc:
        out["ConsumedCapacity"] = cc
    return out


# -- operations ---------------------------------------------------------------------------------
def execute_statement(svc: DynamoDBService, caller: Caller, p: dict) -> dict:
    st = parse_statement(p.get("Statement") or "", p.get("Parameters"))
    if st.kind == "SELECT":
        return _select(svc, caller, st, p)
    if st.kind == "EXISTS":
        raise _malformed("EXISTS is only supported in ExecuteTransaction")
    rv = p.get("ReturnValuesOnConditionCheckFailure") or "NONE"
    a = _write_action(svc, caller, st, rv)
    try:
        run_writes(svc, caller, [a], transactional=False)
    except ActionsFailed as failed:
        raise _single_error(failed.first_failure()) from None
    out: dict = {"Items": _returning(st, a)}
    cc = item_ops.capacity(a.meta, p.get("ReturnConsumedCapacity"), a.units, write=True)
    if cc:
        out["ConsumedCapacity"] = cc
    return out


def batch_execute_statement(svc: DynamoDBService, caller: Caller, p: dict) -> dict:
    responses = []
    for req in p.get("Statements") or []:
        table = None
        try:
            st = parse_statement(req.get("Statement") or "", req.get("Parameters"))
            table = st.table
            if st.kind == "SELECT":
                meta = _table(svc, caller, st)
                if _full_key(meta, st.where) is None:
                    raise validation(MSG_KEY_EQ)
                got = _select(svc, caller, st, {"Statement": req.get("Statement"),
                                                "ConsistentRead": req.get("ConsistentRead")})
                resp: dict = {"TableName": table}
                if got["Items"]:
                    resp["Item"] = got["Items"][0]
                responses.append(resp)
                continue
            if st.kind == "EXISTS":
                raise _malformed("EXISTS is only supported in ExecuteTransaction")
            a = _write_action(svc, caller, st, req.get("ReturnValuesOnConditionCheckFailure") or "NONE")
            try:
                run_writes(svc, caller, [a], transactional=False)
            except ActionsFailed as failed:
                raise _single_error(failed.first_failure()) from None
            responses.append({"TableName": table})
        except AWSError as e:
            if e.code not in ("ValidationException", "ConditionalCheckFailedException", "DuplicateItemException",
                              "ResourceNotFoundException", "TransactionConflictException"):
                raise  # key and internal errors fail the request, as for any other operation
            code = {"ValidationException": "ValidationError", "ConditionalCheckFailedException":
                    "ConditionalCheckFailed", "DuplicateItemException": "DuplicateItem",
                    "ResourceNotFoundException": "ResourceNotFound",
                    "TransactionConflictException": "TransactionConflict"}[e.code]
            err: dict = {"Code": code, "Message": e.message}
            if e.extra and "Item" in e.extra:
                err["Item"] = e.extra["Item"]
            resp = {"Error": err}
            if table is not None and code != "ResourceNotFound":
                resp["TableName"] = table
            responses.append(resp)
    return {"Responses": responses}


def execute_transaction(svc: DynamoDBService, caller: Caller, p: dict) -> dict:
    stmts = p.get("TransactStatements") or []
    tokens = svc.transaction_state.tokens
    token_key, digest, replay = tokens.begin(caller, "ExecuteTransaction", p.get("ClientRequestToken"), stmts)
    if replay is not None:
        return replay
    parsed = [(parse_statement(s.get("Statement") or "", s.get("Parameters")), s) for s in stmts]
    kinds = {st.kind for st, _ in parsed}
    if "SELECT" in kinds and kinds != {"SELECT"}:
        raise validation(MSG_MIXED)
    for st, _ in parsed:
        if st.returning is not None:
            raise validation("RETURNING is not supported in ExecuteTransaction")
    if kinds == {"SELECT"}:
        out = _read_transaction(svc, caller, [st for st, _ in parsed], p)
    else:
        actions = [_write_action(svc, caller, st, s.get("ReturnValuesOnConditionCheckFailure") or "NONE")
                   for st, s in parsed]
        run_transaction(svc, caller, actions)
        metas, units = units_by_table(actions)
        out = {"Responses": [{} for _ in actions]}
        cc = consumed(metas, units, p.get("ReturnConsumedCapacity"), write=True)
        if cc is not None:
            out["ConsumedCapacity"] = cc
    if token_key is not None:
        tokens.remember(token_key, digest, out)
    return out


def _read_transaction(svc: DynamoDBService, caller: Caller, stmts: list[Statement], p: dict) -> dict:
    gets = []
    for st in stmts:
        meta = _table(svc, caller, st)
        key = _full_key(meta, st.where)
        if key is None:
            raise validation(MSG_KEY_EQ)
        hkey, skey, _ = key_of_request(meta, key)
        gets.append((meta, hkey, skey, _condition(st.where), _projection(st)))
    return read_items(svc, table_cryptos(svc, caller, (g[0] for g in gets)), gets, p)

HANDLERS = {
    "ExecuteStatement": execute_statement,
    "BatchExecuteStatement": batch_execute_statement,
    "ExecuteTransaction": execute_transaction,
}
