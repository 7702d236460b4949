"""Query and Scan over the encrypted trees of a table or one of its secondary indexes.

A Query is one partition (token of the partition key value(s)) and one tree range: the sort key condition
maps to bounds on the encoded tree key (begins_with to a prefix range). A Scan walks partitions in token
order (parallel Scan: a segment is an even slice of the token space, ``segment_bounds``), each partition in
key order. Pages stop after ``Limit`` items evaluated (before the filter) or once the items read reach 1 MB,
as DynamoDB does; LastEvaluatedKey is the primary key (plus index key) of the last item read. Resuming needs
no token in the key: it is recomputed from the key's partition key value(s). ``read_page`` is that walk, shared
with PartiQL's SELECT, whose NextToken is a sealed LastEvaluatedKey.

Each page is read inside one store transaction so that a concurrent split or merge of a B+tree node can
never be observed half-done; pagination resumes by position, so items that did not change are neither
skipped nor repeated by concurrent writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation
from dynavault.storage.kv.base import prefix_end
from dynavault.storage.trees import segment_bounds

from . import legacy
from .envelope import item_json
from .expressions import ExpressionContext, evaluate, parse_condition, parse_projection, project
from .expressions import ast as east
from .expressions.keycond import KeyCondition, key_condition_from_parts, key_parts
from .index_model import IndexDef, base_key_bytes, encode_attr, find_index, scalar
from .items import capacity, read_units
from .keyorder import prefix_range
from .values import item_size, validate_attribute_value, value_type

if TYPE_CHECKING:
    from .catalog import TableMeta
    from .database import Database

_INVALID = "One or more parameter values were invalid: "
MAX_PAGE_BYTES = 1024 * 1024
_TYPE_MISMATCH = _INVALID + "Condition parameter type does not match schema type"


@dataclass
class Source:
    """What is read: the table (index id 0) or one index, with its key attributes in comparison order."""

    meta: TableMeta
    index: IndexDef | None
    index_id: int
    hash: tuple[tuple[str, str], ...]
    range: tuple[tuple[str, str], ...]

    @property
    def key_names(self) -> list[str]:
        return [n for n, _ in self.hash] + [n for n, _ in self.range]

    def start_key_names(self) -> set[str]:
        return set(self.meta.key_names) | set(self.key_names)

    def tree_key(self, item: dict) -> bytes:
        enc = b"".join(encode_attr(t, item[n]) for n, t in self.range)
        return enc + base_key_bytes(self.meta, item) if self.index is not None else enc

    def hash_bytes(self, item: dict) -> bytes:
        return b"".join(encode_attr(t, item[n]) for n, t in self.hash)

    def last_key(self, item: dict) -> dict:
        return {n: item[n] for n in self.start_key_names()}


def source(meta: TableMeta, index_name: str | None) -> Source:
    if index_name is None:
        rng = ((meta.range_key, meta.range_type),) if meta.range_key else ()
        return Source(meta, None, 0, ((meta.hash_key, meta.hash_type),), rng)
    idx = find_index(meta, index_name)
    if idx is None:
        raise validation(f"The table does not have the specified index: {index_name}")
    if idx.status == "CREATING":
        raise validation(f"Cannot read from backfilling global secondary index: {index_name}")
    return Source(meta, idx, idx.index_id, idx.hash, idx.range)


# -- shared request pieces --------------------------------------------------------------------------------
def _check_select(p: dict) -> None:
    """Select against the projection parameters: checked before the table is looked up."""
    select = p.get("Select")
    has_pe = p.get("ProjectionExpression") is not None
    has_atg = p.get("AttributesToGet") is not None
    if select is not None and select != "SPECIFIC_ATTRIBUTES":
        if has_pe:
            what = "only the Count" if select == "COUNT" else select
            raise validation(f"Cannot specify the ProjectionExpression when choosing to get {what}")
        if has_atg:
            what = "only the Count" if select == "COUNT" else select
            raise validation(f"Cannot specify the AttributesToGet when choosing to get {what}")
    if select == "SPECIFIC_ATTRIBUTES" and not (has_pe or has_atg):
        raise validation("Must specify the AttributesToGet or ProjectionExpression when choosing to get "
                         "SPECIFIC_ATTRIBUTES")
    if select == "ALL_PROJECTED_ATTRIBUTES" and p.get("IndexName") is None:
        raise validation("ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")


def _select(p: dict, src: Source) -> str:
    """The effective Select once the source is known (what the index projects decides some of it)."""
    select = p.get("Select")
    has_pe = p.get("ProjectionExpression") is not None
    has_atg = p.get("AttributesToGet") is not None
    idx = src.index
    if idx is not None and idx.kind == "gsi" and idx.projection != "ALL" and select == "ALL_ATTRIBUTES":
        raise validation(f"{_INVALID}Select type ALL_ATTRIBUTES is not supported for global secondary index "
                         f"{idx.name} because its projection type is not ALL")
    if select is None:
        if has_pe or has_atg:
            return "SPECIFIC_ATTRIBUTES"
        return "ALL_PROJECTED_ATTRIBUTES" if src.index is not None else "ALL_ATTRIBUTES"
    return select


def _top_names(node, out: set[str]) -> None:
    """Top-level attribute names an expression tree refers to."""
    if isinstance(node, east.PathOp):
        out.add(node.path[0])
        return
    if isinstance(node, (east.Exists, east.AttrType)):
        out.add(node.path[0])
        return
    if isinstance(node, tuple):
        for x in node:
            _top_names(x, out)
        return
    for slot in getattr(type(node), "__slots__", ()):
        v = getattr(node, slot, None)
        if isinstance(v, (east.Condition, east.Operand, tuple)):
            _top_names(v, out)


def _projection(p: dict, ctx: ExpressionContext):
    if p.get("ProjectionExpression") is not None:
        return parse_projection(p["ProjectionExpression"], ctx)
    if p.get("AttributesToGet"):
        return legacy.attributes_to_get_to_projection(p["AttributesToGet"])
    return None


def _filter(p: dict, ctx: ExpressionContext, legacy_name: str):
    if p.get("FilterExpression") is not None:
        return parse_condition(p["FilterExpression"], ctx, kind="FilterExpression")
    if p.get(legacy_name):
        return legacy.filter_to_condition(p[legacy_name], p.get("ConditionalOperator"))
    if p.get("ConditionalOperator") is not None:
        raise validation("ConditionalOperator can only be used when Filter or Expected has two or more elements")
    return None


def _check_gsi_projection(src: Source, proj) -> None:
    idx = src.index
    if idx is None or idx.kind != "gsi" or proj is None:
        return
    names = idx.projected_names(src.meta)
    if names is None:
        return
    missing = sorted({path[0] for path in proj.paths} - names)
    if missing:
        raise validation(f"{_INVALID}Global secondary index {idx.name} does not project {', '.join(missing)}")


def _check_key_value(value: dict, type_: str) -> None:
    validate_attribute_value(value)
    if value_type(value) != type_:
        raise validation(_TYPE_MISMATCH)


def _check_start_values(p: dict) -> None:
    """ExclusiveStartKey's values are well-formed: checked before the table is looked up."""
    for k, v in (p.get("ExclusiveStartKey") or {}).items():
        try:
            validate_attribute_value(v, k)
        except AWSError as e:
            raise validation(f"The provided starting key is invalid: {e.message}") from None


def _start_key(p: dict, src: Source, *, scan: bool) -> dict | None:
    """ExclusiveStartKey against the source's key schema: exactly the table's key attributes (and the
    index's, reading an index), each of its defined type. DynamoDB's texts differ by operation: a Scan
    of the table adds the key-schema reason; a Query, or a Scan of an index, gives the short form."""
    esk = p.get("ExclusiveStartKey")
    if esk is None:
        return None
    bad = validation("The provided starting key is invalid: The provided key element does not match the schema"
                     if scan and src.index is None else "The provided starting key is invalid")
    if set(esk) != src.start_key_names():
        raise bad
    types = src.meta.attribute_types
    for k, v in esk.items():
        t = types.get(k)
        if value_type(v) != t or (t in ("S", "B") and not v[t]):
            raise bad
    return esk


# -- the page walk -----------------------------------------------------------------------------------------
class Page:
    def __init__(self, src: Source, select: str, proj, flt, limit: int | None, fetch_base: bool) -> None:
        self.src = src
        self.select = select
        self.proj = proj
        self.flt = flt
        self.limit = limit
        self.fetch_base = fetch_base
        self.items: list[dict | orjson.Fragment] = []
        self.count = 0
        self.scanned = 0
        self.size = 0
        self.base_size = 0
        self.last: dict | None = None
        # Items taken as stored, no filter, projection or base fetch: nothing needs them parsed, and their
        # size only once the page could reach MAX_PAGE_BYTES. An item's JSON is never shorter than its
        # DynamoDB size (names and strings are their UTF-8 bytes plus quotes; numbers, binaries, sets, maps and
        # lists take more text than size), so while the JSON lengths sum below the limit the sizes do too: the
        # sizes of those items (``_unsized``) are counted only if the page gets that far or capacity is asked
        # for (``settle``).
        self.as_stored = flt is None and proj is None and not fetch_base
        self._unsized: list[bytes] = []
        self._bound = 0  # self.size + the JSON lengths of _unsized

    def settle(self) -> None:
        """Count the sizes of the items taken without one (``size`` exact again)."""
        for raw in self._unsized:
            self.size += item_size(orjson.loads(raw))
        self._unsized.clear()
        self._bound = self.size

    def add(self, db: Database, tx, crypto, raw: bytes) -> bool:
        """Take one stored entry; True when the page is full."""
        self.scanned += 1
        if self.as_stored:
            self.count += 1
            if self.select != "COUNT":
                self.items.append(orjson.Fragment(raw))
            self._bound += len(raw)
            if self._bound < MAX_PAGE_BYTES:
                self._unsized.append(raw)
                if self.limit is None or self.scanned < self.limit:
                    return False
                item = orjson.loads(raw)
            else:
                self.settle()  # the JSON lengths reach the limit: the sizes decide from here on
                item = orjson.loads(raw)
                self.size += item_size(item)
                self._bound = self.size
                if (self.limit is None or self.scanned < self.limit) and self.size < MAX_PAGE_BYTES:
                    return False
            self.last = self.src.last_key(item)
            return True
        item = orjson.loads(raw)
        self.size += item_size(item)
        shown = item
        if self.fetch_base:
            meta = self.src.meta
            base = db.items.get(meta, crypto, encode_attr(meta.hash_type, item[meta.hash_key]),
                                 encode_attr(meta.range_type, item[meta.range_key]) if meta.range_key else b"", tx)
            if base is not None:
                shown = base
                self.base_size += item_size(shown)
        if self.flt is None or evaluate(self.flt, shown):
            self.count += 1
            if self.select != "COUNT":
                self.items.append(self._listed(raw, item, shown))
        if (self.limit is not None and self.scanned >= self.limit) or self.size >= MAX_PAGE_BYTES:
            self.last = self.src.last_key(item)
            return True
        return False

    def take(self, db: Database, tx, crypto, stored: Iterator[tuple[bytes, bytes]]) -> bool:
        """``add`` for each (tree key, stored value) of ``stored`` (``ItemStore.stored_entries``) until the page
        is full (True) or they run out. An item that cannot fill an as-stored page is taken here in a few
        steps; any other goes through ``add``, which decides as it always does."""
        if not self.as_stored:
            for _, value in stored:
                if self.add(db, tx, crypto, item_json(value)):
                    return True
            return False
        listed = self.select != "COUNT"
        items_append = self.items.append
        unsized_append = self._unsized.append
        limit = self.limit if self.limit is not None else 1 << 62  # (no limit: one never reached)
        scanned, count, bound = self.scanned, self.count, self._bound
        for _, value in stored:
            raw = item_json(value)
            n = bound + len(raw)
            scanned += 1
            if n < MAX_PAGE_BYTES and scanned < limit:
                # what ``add`` does with an as-stored item below both limits
                count += 1
                bound = n
                if listed:
                    items_append(orjson.Fragment(raw))
                unsized_append(raw)
                continue
            self.scanned, self.count, self._bound = scanned - 1, count, bound
            if self.add(db, tx, crypto, raw):
                return True
            scanned, count, bound = self.scanned, self.count, self._bound
        self.scanned, self.count, self._bound = scanned, count, bound
        return False

    def _listed(self, raw: bytes, item: dict, shown: dict) -> dict | orjson.Fragment:
        if self.proj is not None:
            return project(self.proj, shown)
        if shown is item:
            # the stored form is the item's canonical JSON: into the response as is, no re-encoding
            return orjson.Fragment(raw)
        return shown

    def result(self, p: dict, consistent: bool) -> dict:
        out: dict = {}
        if self.select != "COUNT":
            out["Items"] = self.items
        out["Count"] = self.count
        out["ScannedCount"] = self.scanned
        if self.last is not None:
            out["LastEvaluatedKey"] = self.last
        mode = p.get("ReturnConsumedCapacity")
        if mode and mode != "NONE":
            self.settle()
            units = read_units(self.size, consistent)
            base_units = read_units(self.base_size, consistent) if self.base_size else 0.0
            idx = self.src.index
            if idx is None:
                cc = capacity(self.src.meta, mode, units, write=False)
            else:
                cc = capacity(self.src.meta, mode, units + base_units, write=False, index_units={idx.label: units})
            out["ConsumedCapacity"] = cc
        return out


def _needs_base(src: Source, select: str, proj, flt) -> bool:
    """An LSI that does not hold everything asked for fetches the table item (DynamoDB's LSI behavior)."""
    idx = src.index
    if idx is None or idx.kind != "lsi" or idx.projection == "ALL":
        return False
    if select == "ALL_ATTRIBUTES":
        return True
    names = idx.projected_names(src.meta) or set()
    wanted: set[str] = set()
    if select == "SPECIFIC_ATTRIBUTES" and proj is not None:
        wanted |= {path[0] for path in proj.paths}
    if flt is not None:
        _top_names(flt, wanted)
    return bool(wanted - names)


@dataclass
class Walk:
    """Where a page reads: one partition's tree-key range [lo, hi) (a Query), or, with no partition, every
    partition whose token lies in [token_lo, token_hi) in token order (a Scan or one segment of it)."""

    partition: bytes | None = None  # the encoded partition key value(s)
    lo: bytes | None = None
    hi: bytes | None = None
    forward: bool = True
    token_lo: bytes = b""
    token_hi: bytes | None = None


def read_page(db: Database, caller: Caller, page: Page, walk: Walk, start: dict | None) -> None:
    """Fill ``page`` from ``walk``, resuming after ``start`` (a checked ExclusiveStartKey of the page's source);
    the one page walk behind Query, Scan and PartiQL's SELECT."""
    src = page.src
    meta = src.meta
    crypto = db.crypto(caller, meta)
    items = db.items
    with items.read() as tx:
        if walk.partition is not None:
            lo, lo_inc, hi, hi_inc = walk.lo, True, walk.hi, False
            if start is not None:
                k = src.tree_key(start)
                if walk.forward:
                    if lo is None or k >= lo:
                        lo, lo_inc = k, False
                elif hi is None or k <= hi:
                    hi, hi_inc = k, False
            token = crypto.token(src.index_id, walk.partition)
            page.take(db, tx, crypto, items.stored_entries(tx, meta, crypto, src.index_id, token, lo=lo,
                                                           lo_inclusive=lo_inc, hi=hi, hi_inclusive=hi_inc,
                                                           reverse=not walk.forward))
            return
        after = None
        if start is not None:
            after = crypto.token(src.index_id, src.hash_bytes(start))
            if after.raw < walk.token_lo or (walk.token_hi is not None and after.raw >= walk.token_hi):
                raise validation("The provided Exclusive start key does not map to the provided segment")
            if page.take(db, tx, crypto, items.stored_entries(tx, meta, crypto, src.index_id, after,
                                                               lo=src.tree_key(start), lo_inclusive=False)):
                return
        for token in items.partitions(tx, meta, crypto, src.index_id, after=after, token_lo=walk.token_lo,
                                      token_hi=walk.token_hi):
            if page.take(db, tx, crypto, items.stored_entries(tx, meta, crypto, src.index_id, token)):
                return


def _check_request(p: dict, op: str) -> None:
    """What Query and Scan check of the request alone, before the table is looked up (as DynamoDB does:
    a bad request names the ValidationException even for a table that does not exist)."""
    legacy.check_no_mixing(p, op)
    _check_select(p)
    _check_start_values(p)


def _prepare(db: Database, caller: Caller, p: dict):
    meta = db.data_table(caller, p["TableName"])
    src = source(meta, p.get("IndexName"))
    consistent = bool(p.get("ConsistentRead"))
    if consistent and src.index is not None and src.index.kind == "gsi":
        raise validation("Consistent reads are not supported on global secondary indexes")
    return meta, src, consistent, _select(p, src)


# -- Query ------------------------------------------------------------------------------------------------
def _key_parts(p: dict, ctx: ExpressionContext) -> dict:
    """attribute -> (op, values) from KeyConditionExpression or KeyConditions."""
    if p.get("KeyConditionExpression") is not None:
        return key_parts(parse_condition(p["KeyConditionExpression"], ctx, kind="KeyConditionExpression"))
    kc = p.get("KeyConditions")
    if kc is None:
        raise validation("Either the KeyConditions or KeyConditionExpression parameter must be specified in the "
                         "request.")
    parts = {}
    for name, op, values in legacy._validated_filter(kc):
        kop = legacy._KEY_OPS.get(op)
        if kop is None:
            raise validation("Attempted conditional constraint is not an indexable operation")
        parts[name] = (kop, values)
    return parts


def _key_plan(src: Source, parts: dict) -> tuple[list[dict], list[dict], str | None, list]:
    """(partition key values, equality prefix of sort key values, last sort op, its values), validated."""
    hash_names = [n for n, _ in src.hash]
    range_names = [n for n, _ in src.range]
    if len(hash_names) == 1 and len(range_names) <= 1:
        kc = key_condition_from_parts(parts, hash_names[0], range_names[0] if range_names else None)
        hvals = [kc.hash_value]
        if kc.sort_op is None:
            return hvals, [], None, []
        return hvals, [], kc.sort_op, list(kc.sort_values)
    # multi-attribute GSI keys: every partition attribute by equality; sort attributes left to right, equality
    # on all but the last one given.
    if len(parts) > len(hash_names) + len(range_names) or not parts:
        raise validation("Query key condition not supported")
    for n in hash_names:
        if n not in parts:
            raise validation(f"Query condition missed key schema element: {n}")
    for n, (op, _) in parts.items():
        if n in hash_names:
            if op != "=":
                raise validation("Query key condition not supported")
        elif n not in range_names:
            raise validation("Query key condition not supported")
    given = [n for n in range_names if n in parts]
    for later in given:
        for prior in range_names[:range_names.index(later)]:
            if prior not in parts or parts[prior][0] != "=":
                raise validation(f"RANGE key attributes {prior} must have equality conditions specified in the "
                                 f"query because a condition is present on key attribute {later}")
    hvals = [parts[n][1][0] for n in hash_names]
    if not given:
        return hvals, [], None, []
    eq = [parts[n][1][0] for n in given[:-1]]
    op, vals = parts[given[-1]]
    if op == "BEGINS_WITH" and value_type(vals[0]) not in ("S", "B"):
        raise validation("Invalid KeyConditionExpression: Incorrect operand type for operator or function; "
                         f"operator or function: begins_with, operand type: {value_type(vals[0])}")
    return hvals, eq, op, list(vals)


def _bounds(src: Source, eq: list[dict], op: str | None, vals: list) -> tuple[bytes | None, bytes | None]:
    """[lo, hi) on the tree key for the sort condition (None: unbounded)."""
    head = b"".join(encode_attr(t, v) for (_, t), v in zip(src.range, eq, strict=False))
    tail_end = prefix_end(head) if head else None
    base_lo = head or None
    if op is None:
        return base_lo, tail_end
    t = src.range[len(eq)][1]
    if op == "BEGINS_WITH":
        return prefix_range(t, scalar(t, vals[0]), head)
    e = head + encode_attr(t, vals[0])
    if op == "=":
        return e, prefix_end(e)
    if op == "<":
        return base_lo, e
    if op == "<=":
        return base_lo, prefix_end(e)
    if op == ">":
        return prefix_end(e), tail_end
    if op == ">=":
        return e, tail_end
    # BETWEEN
    return e, prefix_end(head + encode_attr(t, vals[1]))


def _start_within_condition(src: Source, esk: dict, hash_enc: bytes, hvals: list, eq: list, op: str | None,
                            vals: list) -> None:
    """The ExclusiveStartKey lies in what the key condition selects. DynamoDB's texts as dynalite's suite
    recorded them: without a sort condition, a start key of another partition is outside the query's
    boundaries; with one, a sort value the condition refuses "does not match the range key predicate", and
    then another partition means the query "can return at most one row"."""
    if op is None:
        if src.hash_bytes(esk) != hash_enc:
            raise validation("The provided starting key is outside query boundaries based on provided conditions")
        return
    if len(src.range) == 1 and not eq:  # (a multi-attribute GSI sort key is left to the walk's bounds)
        name = src.range[0][0]
        cond = KeyCondition(src.hash[0][0], hvals[0], name, op, vals)
        if not cond.sort_matches(esk.get(name)):
            raise validation("The provided starting key does not match the range key predicate")
    if src.hash_bytes(esk) != hash_enc:
        raise validation("The query can return at most one row and cannot be restarted")


def query(db: Database, caller: Caller, p: dict) -> dict:
    _check_request(p, "Query")
    ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"),
                            cache=db.expression_cache)
    parts = _key_parts(p, ctx)
    proj = _projection(p, ctx)
    flt = _filter(p, ctx, "QueryFilter")
    ctx.check_all_used()
    meta, src, consistent, select = _prepare(db, caller, p)
    hvals, eq, op, vals = _key_plan(src, parts)
    types = meta.attribute_types
    for n, (_, values) in parts.items():
        for v in values:
            _check_key_value(v, types[n])
            t = types[n]
            if t in ("S", "B") and not v[t]:
                raise validation("One or more parameter values are not valid. The AttributeValue for a key "
                                 f"attribute cannot contain an empty {'string' if t == 'S' else 'binary'} value. "
                                 f"Key: {n}")
    if flt is not None:
        used: set[str] = set()
        _top_names(flt, used)
        if p.get("FilterExpression") is None:
            used = set(p.get("QueryFilter") or {})
        keys = [n for n in src.key_names if n in used]
        if keys:
            what = "Filter Expression" if p.get("FilterExpression") is not None else "QueryFilter"
            raise validation(f"{what} can only contain non-primary key attributes: Primary key attribute: {keys[0]}")
    _check_gsi_projection(src, proj)
    esk = _start_key(p, src, scan=False)
    lo, hi = _bounds(src, eq, op, vals)
    hash_enc = b"".join(encode_attr(t, v) for (_, t), v in zip(src.hash, hvals, strict=True))
    if esk is not None:
        _start_within_condition(src, esk, hash_enc, hvals, eq, op, vals)
    page = Page(src, select, proj, flt, p.get("Limit"), _needs_base(src, select, proj, flt))
    walk = Walk(partition=hash_enc, lo=lo, hi=hi, forward=p.get("ScanIndexForward", True) is not False)
    read_page(db, caller, page, walk, esk)
    return page.result(p, consistent)


# -- Scan -------------------------------------------------------------------------------------------------
def scan(db: Database, caller: Caller, p: dict) -> dict:
    _check_request(p, "Scan")
    segment, total = p.get("Segment"), p.get("TotalSegments")
    if segment is not None and total is None:
        raise validation("The TotalSegments parameter is required but was not present in the request when Segment "
                         "parameter is present")
    if total is not None and segment is None:
        raise validation("The Segment parameter is required but was not present in the request when parameter "
                         "TotalSegments is present")
    if total is not None and segment >= total:
        raise validation("The Segment parameter is zero-based and must be less than parameter TotalSegments: "
                         f"Segment: {segment} is not less than TotalSegments: {total}")
    ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"),
                            cache=db.expression_cache)
    proj = _projection(p, ctx)
    flt = _filter(p, ctx, "ScanFilter")
    ctx.check_all_used()
    meta, src, consistent, select = _prepare(db, caller, p)
    _check_gsi_projection(src, proj)
    esk = _start_key(p, src, scan=True)
    token_lo, token_hi = segment_bounds(segment, total) if total is not None else (b"", None)
    page = Page(src, select, proj, flt, p.get("Limit"), _needs_base(src, select, proj, flt))
    read_page(db, caller, page, Walk(token_lo=token_lo, token_hi=token_hi), esk)
    return page.result(p, consistent)


HANDLERS = {"Query": query, "Scan": scan}
