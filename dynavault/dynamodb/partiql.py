"""PartiQL for DynamoDB: ExecuteStatement, BatchExecuteStatement, ExecuteTransaction.

A statement is parsed by :mod:`.expressions.partiql` into a small tree, then *rendered* here into the
DynamoDB expression language (``#n0.#n1 = :v0``) and handed to the ordinary expression parser, so PartiQL
conditions and updates evaluate exactly as ConditionExpression and UpdateExpression do.

- Writes (INSERT, UPDATE, DELETE, EXISTS checks) become :class:`.transactions.WriteAction`s and run through the
  shared write engine (one store transaction per request).
- SELECT is a Query when the WHERE pins the partition key by equality (and a sort key equality narrows it to
  one item's range), otherwise a Scan; either way the whole WHERE is the filter, and the page is read by
  Query/Scan's own page walk (:func:`.query.read_page`), with its Limit and 1 MB rules. NextToken is that
  walk's LastEvaluatedKey, sealed for the table and the statement: opaque to the client, as DynamoDB's is,
  and never a key value in the clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TYPE_CHECKING

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation
from dynavault.storage.kv.base import prefix_end

from . import items as item_ops
from . import query
from .catalog import TableMeta
from .expressions import (
    ExpressionContext,
    parse_condition,
    parse_projection,
    parse_update,
    updated_attributes,
)
from .expressions.ast import resolve
from .expressions.partiql import COMPARISONS, Binary, Call, Path, Statement, Value, malformed, parse_statement
from .index_model import encode_attr
from .keys import key_of_item, key_of_request, partition_key_bytes
from .transactions import (
    ActionsFailed,
    Replayed,
    WriteAction,
    consumed,
    read_items,
    replay,
    run_transaction,
    run_writes,
    table_cryptos,
    units_by_table,
)
from .values import canonical_item, validate_item

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto

    from .database import Database

MSG_KEY_EQ = "Where clause does not contain a mandatory equality on all key attributes"
MSG_MIXED = "ExecuteTransaction API does not support both read and write operations in the same request."


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
        raise malformed("Unsupported expression")

    def cond(self, node) -> str:
        if isinstance(node, Call):
            return f"{node.name}({', '.join(self.operand(a) for a in node.args)})"
        if not isinstance(node, Binary):
            raise malformed("Expected a condition")
        if node.op in ("AND", "OR"):
            return f"({self.cond(node.left)}) {node.op} ({self.cond(node.right)})"
        if node.op == "NOT":
            return f"NOT ({self.cond(node.left)})"
        if node.op in COMPARISONS:
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
        raise malformed("Unsupported condition")

    def context(self) -> ExpressionContext:
        return ExpressionContext(self.names or None, self.values or None)


_RENDERED = "Invalid ConditionExpression: "


def _condition(where):
    if where is None:
        return None
    r = _Render()
    text = r.cond(where)
    ctx = r.context()
    try:
        return parse_condition(text, ctx)
    except AWSError as e:
        # A statement has no ConditionExpression: DynamoDB answers PartiQL's operand errors without that prefix
        # ("Incorrect operand type for operator or function; ..." as recorded from AWS).
        if e.code == "ValidationException" and e.message.startswith(_RENDERED):
            raise validation(e.message[len(_RENDERED):]) from None
        raise


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


def _table(db: Database, caller: Caller, st: Statement, *, reads_index: bool = False) -> TableMeta:
    """The statement's table; only a SELECT may name one of its indexes (``"table"."index"``)."""
    meta = db.data_table(caller, st.table)
    if st.index is not None and not reads_index:
        raise validation(f"The table does not have the specified index: {st.index}")
    return meta


# -- statements as write actions ----------------------------------------------------------------
def _write_action(db: Database, caller: Caller, st: Statement, rv_on_fail: str) -> WriteAction:
    if st.kind == "INSERT":  # what the statement alone shows is checked before its table is looked up
        if st.where is not None:
            raise malformed("INSERT takes no WHERE")
        item = st.value or {}
        validate_item(item)
    meta = _table(db, caller, st)
    if st.kind == "INSERT":
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


def _statement_binding(statement: str) -> bytes:
    return hashlib.sha256(statement.encode()).digest()


def _encode_next(crypto: TableCrypto, statement: str, last_key: dict) -> str:
    blob = crypto.seal_cursor(_statement_binding(statement), orjson.dumps(last_key))
    return base64.urlsafe_b64encode(blob).decode()


def _decode_next(crypto: TableCrypto, statement: str, text: str) -> dict:
    """The LastEvaluatedKey a NextToken carries; it opens only for the table and statement that made it."""
    try:
        blob = base64.urlsafe_b64decode(text.encode())
    except (ValueError, binascii.Error):
        blob = b""
    plain = crypto.open_cursor(_statement_binding(statement), blob)
    if plain is None:
        raise validation("Invalid NextToken")
    return orjson.loads(plain)


def _walk(meta: TableMeta, eq: dict) -> query.Walk | None:
    """Query-shaped when the partition key is pinned (None: pinned to a value no item can hold), else a Scan."""
    if meta.hash_key not in eq:
        return query.Walk()
    hv = eq[meta.hash_key]
    if hv is None or next(iter(hv)) != meta.hash_type:
        return None
    walk = query.Walk(partition=partition_key_bytes(meta, hv))
    rv = eq.get(meta.range_key) if meta.range_key else None
    if rv is not None and next(iter(rv)) == meta.range_type:
        try:
            e = encode_attr(meta.range_type, rv)
        except AWSError:
            return walk  # not a storable sort key: the filter alone decides (no item matches)
        walk.lo, walk.hi = e, prefix_end(e)
    return walk


def _path_label(path: Path) -> str:
    out = ""
    for part in path.parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


def _by_path(st: Statement, item: dict) -> dict:
    """A SELECT's item as DynamoDB answers it: each selected path is an attribute named by the path's text
    (``m.nested``, ``l[0]``) holding the value found there; paths the item lacks are left out."""
    out: dict = {}
    for path in st.projection or ():
        v = resolve(item, tuple(path.parts))
        if v is not None:
            out[_path_label(path)] = v
    return out


def _index_walk(src: query.Source, where) -> query.Walk | None:
    """An index read: one index partition when the WHERE pins all of its partition key attributes by
    equality (None: to a value no entry can hold), else a scan of the index; the WHERE filters either way."""
    eq: dict = {}
    for c in _conjuncts(where):
        if isinstance(c, Binary) and c.op == "=":
            for a, b in ((c.left, c.right), (c.right, c.left)):
                if isinstance(a, Path) and len(a.parts) == 1 and isinstance(b, Value):
                    eq.setdefault(a.parts[0], []).append(b.value)
    parts = []
    for name, t in src.hash:
        values = eq.get(name)
        if not values:
            return query.Walk()
        if any(v != values[0] for v in values) or next(iter(values[0])) != t:
            return None
        try:
            parts.append(encode_attr(t, values[0]))
        except AWSError:
            return None
    return query.Walk(partition=b"".join(parts))


def _select(db: Database, caller: Caller, st: Statement, p: dict) -> dict:
    meta = _table(db, caller, st, reads_index=True)
    cond = _condition(st.where)
    proj = _projection(st)
    src = query.source(meta, st.index)
    if src.index is not None and src.index.kind == "gsi" and p.get("ConsistentRead"):
        raise validation("Consistent reads are not supported on global secondary indexes")
    walk = _walk(meta, _key_equalities(meta, st.where)) if src.index is None else _index_walk(src, st.where)
    crypto = db.crypto(caller, meta)
    statement = p.get("Statement") or ""
    start = _decode_next(crypto, statement, p["NextToken"]) if p.get("NextToken") else None
    page = query.Page(src, "ALL_ATTRIBUTES" if proj is None else "SPECIFIC_ATTRIBUTES", proj, cond,
                      p.get("Limit"), False)
    if walk is not None:
        if start is not None and walk.partition is not None and src.hash_bytes(start) != walk.partition:
            raise validation("Invalid NextToken")  # same statement, other parameters
        query.read_page(db, caller, page, walk, start)
    got = page.result(p, bool(p.get("ConsistentRead")))
    out: dict = {"Items": got["Items"] if st.projection is None else [_by_path(st, i) for i in got["Items"]]}
    if "LastEvaluatedKey" in got:
        out["NextToken"] = _encode_next(crypto, statement, got["LastEvaluatedKey"])
    if "ConsumedCapacity" in got:
        out["ConsumedCapacity"] = got["ConsumedCapacity"]
    return out


# -- operations ---------------------------------------------------------------------------------
def execute_statement(db: Database, caller: Caller, p: dict) -> dict:
    st = parse_statement(p.get("Statement") or "", p.get("Parameters"))
    if st.kind == "SELECT":
        return _select(db, caller, st, p)
    if st.kind == "EXISTS":
        raise malformed("EXISTS is only supported in ExecuteTransaction")
    rv = p.get("ReturnValuesOnConditionCheckFailure") or "NONE"
    a = _write_action(db, caller, st, rv)
    try:
        run_writes(db, caller, [a], cause="ExecuteStatement", transactional=False)
    except ActionsFailed as failed:
        raise _single_error(failed.first_failure()) from None
    out: dict = {"Items": _returning(st, a)}
    cc = item_ops.capacity(a.meta, p.get("ReturnConsumedCapacity"), a.units, write=True, index_units=a.index_units)
    if cc:
        out["ConsumedCapacity"] = cc
    return out


def batch_execute_statement(db: Database, caller: Caller, p: dict) -> dict:
    responses = []
    for req in p.get("Statements") or []:
        table = None
        try:
            st = parse_statement(req.get("Statement") or "", req.get("Parameters"))
            table = st.table
            if st.kind == "SELECT":
                meta = _table(db, caller, st)
                if _full_key(meta, st.where) is None:
                    raise validation(MSG_KEY_EQ)
                got = _select(db, caller, st, {"Statement": req.get("Statement"),
                                                "ConsistentRead": req.get("ConsistentRead")})
                resp: dict = {"TableName": table}
                if got["Items"]:
                    resp["Item"] = got["Items"][0]
                responses.append(resp)
                continue
            if st.kind == "EXISTS":
                raise malformed("EXISTS is only supported in ExecuteTransaction")
            a = _write_action(db, caller, st, req.get("ReturnValuesOnConditionCheckFailure") or "NONE")
            try:
                run_writes(db, caller, [a], cause="BatchExecuteStatement", transactional=False)
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


def execute_transaction(db: Database, caller: Caller, p: dict) -> dict:
    stmts = p.get("TransactStatements") or []
    tokens = db.transaction_state.tokens
    token, earlier = tokens.begin(caller, "ExecuteTransaction", p.get("ClientRequestToken"), stmts)
    if earlier is not None and not earlier["read"]:
        return _replayed(earlier, p)
    parsed = [(parse_statement(s.get("Statement") or "", s.get("Parameters")), s) for s in stmts]
    kinds = {st.kind for st, _ in parsed}
    if "SELECT" in kinds and kinds != {"SELECT"}:
        raise validation(MSG_MIXED)
    for st, _ in parsed:
        if st.returning is not None:
            raise validation("RETURNING is not supported in ExecuteTransaction")
    if kinds == {"SELECT"}:
        # Reads are run again on a retry: the token's row pins the request, never the items read.
        out = _read_transaction(db, caller, [st for st, _ in parsed], p)
        if token is not None and earlier is None:
            with db.items.write() as w:
                if tokens.check(w.tx, token) is None:
                    tokens.record(w.tx, token, [], responses=len(parsed), read=True)
        return out
    actions = [_write_action(db, caller, st, s.get("ReturnValuesOnConditionCheckFailure") or "NONE")
               for st, s in parsed]
    try:
        run_transaction(db, caller, actions, "ExecuteTransaction", token)
    except Replayed as again:  # an identical request committed first
        return _replayed(again.entry, p)
    metas, units = units_by_table(actions)
    out = {"Responses": [{} for _ in actions]}
    cc = consumed(metas, units, p.get("ReturnConsumedCapacity"), write=True, actions=actions)
    if cc is not None:
        out["ConsumedCapacity"] = cc
    return out


def _replayed(entry: dict, p: dict) -> dict:
    out = {"Responses": [{} for _ in range(entry["n"])]}
    out.update(replay(entry, p.get("ReturnConsumedCapacity")))
    return out


def _read_transaction(db: Database, caller: Caller, stmts: list[Statement], p: dict) -> dict:
    gets = []
    for st in stmts:
        meta = _table(db, caller, st)
        key = _full_key(meta, st.where)
        if key is None:
            raise validation(MSG_KEY_EQ)
        hkey, skey, _ = key_of_request(meta, key)
        gets.append((meta, hkey, skey, _condition(st.where), _projection(st)))
    return read_items(db, table_cryptos(db, caller, (g[0] for g in gets)), gets, p)

HANDLERS = {
    "ExecuteStatement": execute_statement,
    "BatchExecuteStatement": batch_execute_statement,
    "ExecuteTransaction": execute_transaction,
}
