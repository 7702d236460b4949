"""The PITR model test: random puts, updates and deletes against a real server, each bracketed by the
client's clock (the server runs on the same clock), then restores to random instants between writes; every
restored table holds exactly the items a dict model held at that instant."""

from __future__ import annotations

import math
import time
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dynamodb.test_pitr import at, enable, ms_client

KEYS = [(p, s) for p in ("p0", "p1", "p2") for s in (1, 2, 3)]

op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.integers(0, 99)),
    st.tuples(st.just("update"), st.sampled_from(KEYS), st.integers(0, 99)),
    st.tuples(st.just("remove_v"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.just(0)),
)


def _key(k: tuple[str, int]) -> dict:
    return {"pk": {"S": k[0]}, "sk": {"N": str(k[1])}}


def _apply(ddb, name: str, model: dict, o: tuple) -> None:
    kind, k, v = o
    if kind == "put":
        item = {**_key(k), "v": {"N": str(v)}, "tag": {"S": f"put-{v}"}}
        ddb.put_item(TableName=name, Item=item)
        model[k] = item
    elif kind == "update":  # an upsert, as DynamoDB's UpdateItem
        ddb.update_item(TableName=name, Key=_key(k), UpdateExpression="SET v = :v",
                        ExpressionAttributeValues={":v": {"N": str(v)}})
        model[k] = {**model.get(k, _key(k)), "v": {"N": str(v)}}
    elif kind == "remove_v":
        ddb.update_item(TableName=name, Key=_key(k), UpdateExpression="REMOVE v")
        if k in model:  # DynamoDB makes no item for an UpdateItem that only removes
            model[k] = {a: x for a, x in model[k].items() if a != "v"}
    else:
        ddb.delete_item(TableName=name, Key=_key(k))
        model.pop(k, None)


def _scan(ddb, name: str) -> dict:
    return {(i["pk"]["S"], int(i["sk"]["N"])): i for i in ddb.scan(TableName=name, ConsistentRead=True)["Items"]}


def _restore(ddb, source: str, target: str, when: float) -> None:
    deadline = time.time() + 20
    while True:
        try:
            ddb.restore_table_to_point_in_time(SourceTableName=source, TargetTableName=target,
                                               RestoreDateTime=at(when))
            break
        except Exception as err:  # the first base snapshot may still be copying
            if "being enabled" not in str(err) or time.time() > deadline:
                raise
            time.sleep(0.02)
    while ddb.describe_table(TableName=target)["Table"]["TableStatus"] != "ACTIVE":
        assert time.time() < deadline
        time.sleep(0.02)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(before=st.lists(op, max_size=6), ops=st.lists(op, min_size=1, max_size=25),
       picks=st.lists(st.integers(-1, 24), min_size=1, max_size=3, unique=True))
def test_restore_holds_exactly_the_items_of_that_instant(srv, before, ops, picks):
    ddb = ms_client(srv)
    name = f"pitr-model-{uuid.uuid4().hex[:10]}"
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "N"}],
                     BillingMode="PAY_PER_REQUEST")
    model: dict = {}
    for o in before:  # in the base snapshot
        _apply(ddb, name, model, o)
    enable(ddb, name)
    states = [(time.time(), dict(model))]  # (the time the state began at the latest, the state)
    edges = []
    for o in ops:
        time.sleep(0.003)  # >= 2 ms between writes: a millisecond instant fits between any two
        edges.append(time.time())
        _apply(ddb, name, model, o)
        states.append((time.time(), dict(model)))
    edges.append(time.time() + 0.003)
    for n, pick in enumerate(sorted({min(p, len(ops) - 1) for p in picks})):
        began, want = states[pick + 1]
        # the first whole millisecond after the state began, plus half of one: boto3 sends milliseconds
        when = math.ceil(began * 1000) / 1000 + 0.0005
        assert when < edges[pick + 1], "no millisecond between two writes"
        target = f"{name}-r{n}"
        _restore(ddb, name, target, when)
        assert _scan(ddb, target) == want, (pick, ops)
        ddb.delete_table(TableName=target)
    ddb.delete_table(TableName=name)
