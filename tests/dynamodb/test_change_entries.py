"""``index_model.change_entries`` (the write path's index entries, old and new together) gives exactly what
``entry_for`` gives for each item alone: the same tokens, tree keys and projected items, whether the index key
values changed or not, and with the primary key tuple handed in by the item store (``hkey + skey``) or not."""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynavault.dynamodb.catalog import TableMeta
from dynavault.dynamodb.index_model import change_entries, entry_for, index_defs
from dynavault.dynamodb.keys import key_of_item
from dynavault.dynamodb.values import canonical_item
from dynavault.errors import AWSError
from dynavault.sse.crypto import NodeCipher, StreamCipher, TableCrypto

_S = st.text(min_size=0, max_size=6)
_N = st.sampled_from(["0", "1", "1.0", "01", "-0", "1e2", "100", "-3.50", "12345678901234567890", "0.001"])
_B = st.sampled_from(["", "AA==", "AAE=", "/w==", "aGVsbG8="])


def _value(t: str):
    if t == "S":
        return _S.map(lambda s: {"S": s})
    if t == "N":
        return _N.map(lambda s: {"N": s})
    return _B.map(lambda s: {"B": s})


def _meta(types: dict[str, str], projection: dict, gsi_range: bool) -> TableMeta:
    ks = [{"AttributeName": "gh", "KeyType": "HASH"}] + ([{"AttributeName": "gr", "KeyType": "RANGE"}]
                                                          if gsi_range else [])
    return TableMeta(
        table_id=str(uuid.uuid4()), name="tbl", account="1", region="r",
        key_schema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        attribute_definitions=[{"AttributeName": n, "AttributeType": t} for n, t in types.items()],
        global_indexes=[{"IndexName": "g", "IndexId": "1", "KeySchema": ks, "Projection": projection}])


_CRYPTO = TableCrypto(b"\x01" * 16, os.urandom(32), NodeCipher({1: os.urandom(32)}, 1), StreamCipher(os.urandom(32)))
_PROJECTIONS = [{"ProjectionType": "KEYS_ONLY"}, {"ProjectionType": "ALL"},
                {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["x"]}]


@st.composite
def _case(draw):
    types = {n: draw(st.sampled_from("SNB")) for n in ("pk", "sk", "gh", "gr")}
    meta = _meta(types, draw(st.sampled_from(_PROJECTIONS)), draw(st.booleans()))
    key = {"pk": draw(_value(types["pk"]).filter(lambda v: v != {"S": ""} and v != {"B": ""})),
           "sk": draw(_value(types["sk"]).filter(lambda v: v != {"S": ""} and v != {"B": ""}))}

    def item():
        it = dict(key)
        for n in ("gh", "gr"):
            pick = draw(st.sampled_from(["type", "type", "other", "absent"]))
            if pick == "type":
                it[n] = draw(_value(types[n]))
            elif pick == "other":
                it[n] = draw(_value(draw(st.sampled_from("SNB"))))
        if draw(st.booleans()):
            it["x"] = {"S": draw(_S)}
        return canonical_item(it)

    old = item() if draw(st.booleans()) else None
    new = item() if draw(st.booleans()) else None
    if old is not None and new is not None and draw(st.booleans()):
        new = {**new, **{n: old[n] for n in ("gh", "gr") if n in old}}  # same index key values, often
    return meta, old, new


@settings(max_examples=500, deadline=None)
@given(case=_case(), with_base=st.booleans())
def test_change_entries_are_entry_for_of_each_item(case, with_base: bool) -> None:
    meta, old, new = case
    (idx,) = index_defs(meta)
    try:
        want_new = entry_for(idx, meta, _CRYPTO, new, check=True)
    except AWSError as e:
        with pytest.raises(AWSError) as got:
            change_entries(idx, meta, _CRYPTO, old, new)
        assert got.value.message == e.message
        return
    want_old = entry_for(idx, meta, _CRYPTO, old)
    base = b""
    if with_base and (old is not None or new is not None):
        hkey, skey, _ = key_of_item(meta, new if new is not None else old)
        base = hkey + skey
    assert change_entries(idx, meta, _CRYPTO, old, new, base) == (want_old, want_new)
