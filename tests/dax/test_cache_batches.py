"""BatchGetItem and TransactGetItems and DAX's item cache, through the official Python client.

DAX answers the eventually consistent keys of a BatchGetItem from its item cache and fetches the misses (which
then fill it); a consistent or projected table passes through. TransactGetItems always passes through and
leaves the cache alone (DAX's developer guide: transactional reads are passed through without the items being
cached, as strongly consistent reads are)."""

from __future__ import annotations

import time

import pytest

from dynavault.dax import protocol as P
from tests.conftest import make_table
from tests.dax import raw
from tests.dax.conftest import dax_server
from tests.dax.daxclient import free_port

#: long enough for three client starts on a loaded machine
TTL = 12


@pytest.fixture(scope="module")
def cached(server_factory):
    return dax_server(server_factory(group="dax-cache-batch", dax_port=free_port(), dax_record_ttl_seconds=TTL,
                                     dax_query_ttl_seconds=TTL))


def _script(table: str, body: str) -> str:
    return f'''
T = {table!r}
def k(pk):
    return {{"pk": {{"S": pk}}}}
def batch(*pks, **extra):
    r = dax.batch_get_item(RequestItems={{T: dict({{"Keys": [k(p) for p in pks]}}, **extra)}})
    assert r["UnprocessedKeys"] in ({{}}, {{T: []}}) or not r["UnprocessedKeys"].get(T), r
    return {{i["pk"]["S"]: i["v"]["S"] if "v" in i else None for i in r["Responses"].get(T, [])}}
def tget(*pks):
    r = dax.transact_get_items(TransactItems=[{{"Get": {{"TableName": T, "Key": k(p)}}}} for p in pks])
    return [x["Item"]["v"]["S"] if "Item" in x else None for x in r["Responses"]]
def get(pk):
    item = dax.get_item(TableName=T, Key=k(pk)).get("Item")
    return item["v"]["S"] if item else None
''' + body


def test_batch_get_item_uses_the_item_cache_and_transact_get_items_passes_through(cached, dax_py, unique_name):
    http = cached.http()
    make_table(http, unique_name)

    def put(pk: str, value: str) -> None:
        http.put_item(TableName=unique_name, Item={"pk": {"S": pk}, "v": {"S": value}})

    put("a", "a1")
    put("b", "b1")
    first = cached.run(dax_py, _script(unique_name, 'out("get", get("a"))\n'))
    started = time.monotonic()  # a was cached before this
    assert first == {"get": "a1"}
    put("a", "a2")  # over HTTP: DAX's cache does not see it
    put("c", "c1")
    res = cached.run(dax_py, _script(unique_name, '''
out("b1", batch("a", "b", "c", "z"))       # a from the cache, b and c fetched, z absent (cached as absent)
''' + "\n"))
    assert res["b1"] == {"a": "a1", "b": "b1", "c": "c1"}
    put("b", "b2")
    put("z", "z1")
    res = cached.run(dax_py, _script(unique_name, '''
out("cached", batch("a", "b", "c", "z"))    # every key from the cache now, z still absent
out("consistent", batch("a", "b", "z", ConsistentRead=True))
out("projected", batch("a", "b", ProjectionExpression="pk, v"))
out("tx", tget("a", "b", "z"))
out("get", [get("a"), get("b"), get("z")])  # the transaction filled nothing
'''))
    assert res["cached"] == {"a": "a1", "b": "b1", "c": "c1"}
    assert res["consistent"] == {"a": "a2", "b": "b2", "z": "z1"}
    assert res["projected"] == {"a": "a2", "b": "b2"}
    assert res["tx"] == ["a2", "b2", "z1"]
    assert res["get"] == ["a1", "b1", None]
    time.sleep(max(0.0, TTL + 0.5 - (time.monotonic() - started)))
    res = cached.run(dax_py, _script(unique_name, 'out("after", batch("a", "b", "c", "z"))\n'))
    assert res["after"]["a"] == "a2" and res["after"]["z"] == "z1"


def test_a_batch_the_engine_refuses_is_refused_with_every_key_cached(cached, unique_name):
    # over the raw protocol: the official client refuses duplicate keys itself before sending
    http = cached.http()
    make_table(http, unique_name)
    http.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "a1"}})
    c = raw.Conn(int(cached.srv.settings["dax_port"]))
    c.send(raw.handshake() + raw.authorize(cached.key, cached.secret))
    c.send(raw.request(P.GET_ITEM, unique_name.encode(), b"a", None))
    assert c.response()[0] == "ok"
    c.send(raw.request(P.BATCH_GET_ITEM, {unique_name: [False, None, [b"a"]]}, None))
    kind, body = c.response(body_values=2)
    assert kind == "ok" and list(body[0][0]) == [unique_name]
    c.send(raw.request(P.BATCH_GET_ITEM, {unique_name: [False, None, [b"a", b"a"]]}, None))
    kind, _codes, message, detail = c.response()
    assert kind == "error" and detail[1] == "ValidationException" and "duplicate" in message.lower(), message
    c.close()
