"""Model test: random writes through every write operation, random stream reads (page sizes, shard rollovers),
compared with what each view type must show according to a model of the table."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as s

from tests.dynamodb.streams_util import consume, create_stream_table, summary

VIEWS = ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]
PKS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.servers import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("streams-model"), allow_any_credentials=True,
                        stream_status_seconds=0, stream_shard_max_records=4)
    yield srv
    srv.stop()


def key(pk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": "s"}}


value = s.integers(0, 3)  # few values: many writes change nothing
op = s.one_of(
    s.tuples(s.just("put"), s.sampled_from(PKS), value),
    s.tuples(s.just("update"), s.sampled_from(PKS), value),
    s.tuples(s.just("delete"), s.sampled_from(PKS), s.just(0)),
    s.tuples(s.just("batch"), s.lists(s.tuples(s.sampled_from(PKS), s.one_of(value, s.none())), min_size=1,
                                      max_size=3, unique_by=lambda x: x[0]), s.just(0)),
    s.tuples(s.just("transact"), s.lists(s.tuples(s.sampled_from(PKS), s.one_of(value, s.none())), min_size=1,
                                         max_size=3, unique_by=lambda x: x[0]), s.just(0)),
    s.tuples(s.just("partiql-update"), s.sampled_from(PKS), value),
)


def _apply(ddb, t: str, model: dict, step) -> list[tuple[str, dict | None, dict | None]]:
    """Run one step against the server and the model; -> the model's changes (key, old, new) in order."""
    kind, arg, v = step
    changes = []

    def change(pk: str, new: dict | None) -> None:
        old = model.get(pk)
        if old != new:
            changes.append((pk, old, new))
        model[pk] = new

    if kind == "put":
        item = {**key(arg), "v": {"N": str(v)}}
        ddb.put_item(TableName=t, Item=item)
        change(arg, item)
    elif kind == "update":
        ddb.update_item(TableName=t, Key=key(arg), UpdateExpression="SET v = :v",
                        ExpressionAttributeValues={":v": {"N": str(v)}})
        change(arg, {**(model.get(arg) or key(arg)), "v": {"N": str(v)}})
    elif kind == "delete":
        ddb.delete_item(TableName=t, Key=key(arg))
        change(arg, None)
    elif kind == "batch":
        ddb.batch_write_item(RequestItems={t: [
            {"PutRequest": {"Item": {**key(pk), "v": {"N": str(x)}}}} if x is not None
            else {"DeleteRequest": {"Key": key(pk)}} for pk, x in arg]})
        for pk, x in arg:
            change(pk, {**key(pk), "v": {"N": str(x)}} if x is not None else None)
    elif kind == "transact":
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": t, "Item": {**key(pk), "v": {"N": str(x)}}}} if x is not None
            else {"Delete": {"TableName": t, "Key": key(pk)}} for pk, x in arg])
        for pk, x in arg:
            change(pk, {**key(pk), "v": {"N": str(x)}} if x is not None else None)
    else:  # PartiQL UPDATE of an existing item only (it fails on a missing one)
        if model.get(arg) is None:
            return changes
        ddb.execute_statement(Statement=f"UPDATE \"{t}\" SET v = {v} WHERE pk = '{arg}' AND sk = 's'")
        change(arg, {**model[arg], "v": {"N": str(v)}})
    return changes


def _expected(view: str, changes) -> list[tuple]:
    out = []
    for pk, old, new in changes:
        event = "INSERT" if old is None else ("REMOVE" if new is None else "MODIFY")
        out.append((event, (("pk", pk), ("sk", "s")),
                    new if view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") else None,
                    old if view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") else None))
    return out


def _per_item(records: list[tuple]) -> dict:
    out: dict = {}
    for r in records:
        out.setdefault(dict(r[1])["pk"], []).append(r)
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(view=s.sampled_from(VIEWS), steps=s.lists(op, min_size=1, max_size=14), page=s.integers(1, 5))
def test_stream_matches_the_model(server, view, steps, page):
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    t = f"model-{uuid.uuid4().hex[:12]}"
    arn = create_stream_table(ddb, t, view)["LatestStreamArn"]
    model: dict = {}
    changes = []
    for step in steps:
        changes += _apply(ddb, t, model, step)
    got = summary(consume(st, arn, limit=page))
    want = _expected(view, changes)
    # one record per change; batches and transactions may order their items differently, each item's own
    # changes never
    assert sorted(map(repr, got)) == sorted(map(repr, want))
    assert _per_item(got) == _per_item(want)
    ddb.delete_table(TableName=t)
