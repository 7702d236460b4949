"""DAX's item and query caches: eventually consistent reads from the cache (stale up to the TTL, as DAX),
strongly consistent reads through, writes through DAX written through, and a table whose key goes away fails
over the cache as it fails without it, its entries dropped."""

from __future__ import annotations

import time

import pytest

from dynavault.dax import protocol as P
from dynavault.dax.attributes import decode_values
from tests.conftest import make_table
from tests.dax import raw
from tests.dax.conftest import dax_server
from tests.dax.daxclient import free_port

TTL = 3


@pytest.fixture(scope="module")
def cached(server_factory):
    return dax_server(server_factory(group="dax-cache", dax_port=free_port(), dax_record_ttl_seconds=TTL,
                                     dax_query_ttl_seconds=TTL, key_refresh_seconds=1))


def _session(dax) -> raw.Conn:
    c = raw.Conn(int(dax.srv.settings["dax_port"]))
    c.send(raw.handshake() + raw.authorize(dax.key, dax.secret))
    return c


def _get(c: raw.Conn, table: str, key: bytes, consistent: bool = False):
    c.send(raw.request(P.GET_ITEM, table.encode(), key, {P.Param.CONSISTENT_READ: True} if consistent else None))
    kind, body = c.response()
    assert kind == "ok", body
    item = body[0].get(P.Result.ITEM)
    return None if item is None else decode_values(item)[1]


def _query(c: raw.Conn, table: str, consistent: bool = False) -> list:
    expr = b"\x83\x01\x83\x00\x82\x12bpk\x82\x11\x00\x81aq"  # [1, [=, [path pk], [var 0]], ["q"]]
    opts = {P.Param.CONSISTENT_READ: 1} if consistent else None
    c.send(raw.request(P.QUERY, table.encode(), expr, opts))
    kind, (body,) = c.response()
    assert kind == "ok", body
    return [decode_values(v)[1] for _k, v in body[P.Result.ITEMS]]


def test_eventually_consistent_reads_come_from_the_cache_until_the_ttl(cached, unique_name):
    http = cached.http()
    make_table(http, unique_name)
    http.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "one"}})
    c = _session(cached)
    assert _get(c, unique_name, b"a") == ["one"]
    started = time.monotonic()
    http.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "two"}})  # not through DAX
    assert _get(c, unique_name, b"a") == ["one"]  # DAX's item cache: stale until the TTL
    assert _get(c, unique_name, b"a", consistent=True) == ["two"]  # strongly consistent: passed through
    assert _get(c, unique_name, b"a") == ["one"]  # ... and left the cache alone
    time.sleep(max(0.0, TTL + 0.3 - (time.monotonic() - started)))
    assert _get(c, unique_name, b"a") == ["two"]
    # absent items are cached too
    assert _get(c, unique_name, b"b") is None
    http.put_item(TableName=unique_name, Item={"pk": {"S": "b"}, "v": {"S": "new"}})
    assert _get(c, unique_name, b"b") is None
    c.close()


def test_writes_through_dax_write_through_the_item_cache(cached, unique_name):
    http = cached.http()
    make_table(http, unique_name)
    http.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "old"}})
    c = _session(cached)
    assert _get(c, unique_name, b"a") == ["old"]
    c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST_ID, ["v"]))
    _, (list_id,) = c.response()
    import cbor2

    c.send(raw.request(P.PUT_ITEM, unique_name.encode(), b"a", cbor2.dumps(list_id) + cbor2.dumps("new"), None))
    assert c.response()[0] == "ok"
    assert _get(c, unique_name, b"a") == ["new"]
    update = b"\x83\x01\x81\x83\x13\x82\x12av\x82\x11\x00\x81cupd"  # SET v = :0, :0 = "upd"
    c.send(raw.request(P.UPDATE_ITEM, unique_name.encode(), b"a", {P.Param.UPDATE: update}))
    assert c.response()[0] == "ok"
    assert _get(c, unique_name, b"a") == ["upd"]  # the entry was dropped: read again from the table
    c.send(raw.request(P.DELETE_ITEM, unique_name.encode(), b"a", None))
    assert c.response()[0] == "ok"
    assert _get(c, unique_name, b"a") is None
    c.close()


def test_query_cache_serves_eventually_consistent_queries(cached, unique_name):
    http = cached.http()
    make_table(http, unique_name, range_type="N")
    http.put_item(TableName=unique_name, Item={"pk": {"S": "q"}, "sk": {"N": "1"}, "v": {"S": "x"}})
    c = _session(cached)
    assert _query(c, unique_name) == [["x"]]
    http.put_item(TableName=unique_name, Item={"pk": {"S": "q"}, "sk": {"N": "2"}, "v": {"S": "y"}})
    assert _query(c, unique_name) == [["x"]]
    assert _query(c, unique_name, consistent=True) == [["x"], ["y"]]
    time.sleep(TTL + 0.3)
    assert _query(c, unique_name) == [["x"], ["y"]]
    c.close()


def test_a_disabled_key_is_not_hidden_by_the_cache(server_factory, unique_name):
    # a TTL far longer than the test: only the key's failure can have emptied the cache
    cached = dax_server(server_factory(group="dax-cache-key", dax_port=free_port(), dax_record_ttl_seconds=600,
                                       key_refresh_seconds=1))
    http = cached.http()
    kms = cached.srv.client("kms", access_key=cached.key, secret=cached.secret)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    make_table(http, unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_id})
    http.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "cached"}})
    c = _session(cached)
    assert _get(c, unique_name, b"a") == ["cached"]
    kms.disable_key(KeyId=key_id)
    time.sleep(1.5)  # past the key refresh interval
    c.send(raw.request(P.GET_ITEM, unique_name.encode(), b"a", None))
    kind, _codes, message, detail = c.response()
    assert kind == "error" and detail[1] == "ValidationException" and "disabled" in message
    kms.enable_key(KeyId=key_id)
    time.sleep(1.5)
    http.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "after"}})
    # within the TTL of the old entry: it was dropped when the key failed, so the read goes to the table
    assert _get(c, unique_name, b"a") == ["after"]
    c.close()
