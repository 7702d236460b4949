"""Every item write, whatever operation makes it, goes through the one item-change path.

The server's change counter is a subscriber of that path (``dynavault_item_changes{cause,event}`` on
/metrics): each committed change is counted once with its cause and event, and a write that is refused
or rolled back is not counted at all.
"""

from __future__ import annotations

import re
import urllib.request

import pytest
from botocore.exceptions import ClientError


def _changes(srv) -> dict[tuple[str, str], int]:
    text = urllib.request.urlopen(srv.endpoint + "/metrics", timeout=5).read().decode()
    out = {}
    for cause, event, value in re.findall(
            r'^dynavault_item_changes_total\{cause="([^"]+)",event="([^"]+)"\} (\S+)$', text, re.M):
        out[(cause, event)] = int(float(value))
    return out


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(group="change-path", allow_any_credentials=True)  # of its own: it counts changes


def _table(ddb, name: str) -> None:
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}],
    )


def test_each_write_operation_is_one_change_per_item_with_its_cause(server):
    ddb = server.client("dynamodb")
    _table(ddb, "changes")
    before = _changes(server)

    def k(pk, sk="s"):
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    ddb.put_item(TableName="changes", Item={**k("a"), "g": {"S": "x"}})
    ddb.put_item(TableName="changes", Item={**k("a"), "g": {"S": "y"}})
    ddb.update_item(TableName="changes", Key=k("b"), UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"N": "1"}})
    ddb.update_item(TableName="changes", Key=k("b"), UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"N": "2"}})
    ddb.delete_item(TableName="changes", Key=k("b"))
    ddb.delete_item(TableName="changes", Key=k("never-there"))  # nothing to remove: no change
    ddb.batch_write_item(RequestItems={"changes": [{"PutRequest": {"Item": k("c1")}},
                                                   {"PutRequest": {"Item": k("c2")}},
                                                   {"DeleteRequest": {"Key": k("a")}}]})
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": "changes", "Item": k("t1")}},
        {"Update": {"TableName": "changes", "Key": k("c1"), "UpdateExpression": "SET w = :w",
                    "ExpressionAttributeValues": {":w": {"S": "w"}}}},
        {"Delete": {"TableName": "changes", "Key": k("c2")}},
        {"ConditionCheck": {"TableName": "changes", "Key": k("absent"),
                            "ConditionExpression": "attribute_not_exists(pk)"}},
    ])
    ddb.execute_statement(Statement="INSERT INTO \"changes\" VALUE {'pk': 'p1', 'sk': 's'}")
    ddb.execute_statement(Statement="UPDATE \"changes\" SET z = 1 WHERE pk = 'p1' AND sk = 's'")
    ddb.batch_execute_statement(Statements=[{"Statement": "DELETE FROM \"changes\" WHERE pk = 'p1' AND sk = 's'"}])
    ddb.execute_transaction(TransactStatements=[{"Statement": "INSERT INTO \"changes\" VALUE {'pk': 'x1', 'sk': 's'}"},
                                                {"Statement": "INSERT INTO \"changes\" VALUE {'pk': 'x2', 'sk': 's'}"}])

    delta = {key: n - before.get(key, 0) for key, n in _changes(server).items() if n != before.get(key, 0)}
    assert delta == {
        ("PutItem", "INSERT"): 1, ("PutItem", "MODIFY"): 1,
        ("UpdateItem", "INSERT"): 1, ("UpdateItem", "MODIFY"): 1,
        ("DeleteItem", "REMOVE"): 1,
        ("BatchWriteItem", "INSERT"): 2, ("BatchWriteItem", "REMOVE"): 1,
        ("TransactWriteItems", "INSERT"): 1, ("TransactWriteItems", "MODIFY"): 1,
        ("TransactWriteItems", "REMOVE"): 1,
        ("ExecuteStatement", "INSERT"): 1, ("ExecuteStatement", "MODIFY"): 1,
        ("BatchExecuteStatement", "REMOVE"): 1,
        ("ExecuteTransaction", "INSERT"): 2,
    }


def test_refused_and_rolled_back_writes_are_not_changes(server):
    ddb = server.client("dynamodb")
    _table(ddb, "nochanges")
    ddb.put_item(TableName="nochanges", Item={"pk": {"S": "a"}, "sk": {"S": "s"}})
    before = _changes(server)
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        ddb.put_item(TableName="nochanges", Item={"pk": {"S": "a"}, "sk": {"S": "s"}},
                     ConditionExpression="attribute_not_exists(pk)")
    # the base write happens before the index key is found to have the wrong type: all of it rolls back
    with pytest.raises(ClientError, match="Type mismatch for Index Key"):
        ddb.put_item(TableName="nochanges", Item={"pk": {"S": "b"}, "sk": {"S": "s"}, "g": {"N": "1"}})
    with pytest.raises(ClientError, match="TransactionCanceled"):
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "nochanges", "Item": {"pk": {"S": "c"}, "sk": {"S": "s"}}}},
            {"Put": {"TableName": "nochanges", "Item": {"pk": {"S": "a"}, "sk": {"S": "s"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    assert _changes(server) == before
    assert "Item" not in ddb.get_item(TableName="nochanges", Key={"pk": {"S": "b"}, "sk": {"S": "s"}})
    assert "Item" not in ddb.get_item(TableName="nochanges", Key={"pk": {"S": "c"}, "sk": {"S": "s"}})


def test_change_counter_counts_exactly_from_several_threads():
    """Background jobs commit changes on their own threads while the event loop commits requests': the
    counter's cells are plain floats with no lock, so every thread must bump cells of its own (one per thread
    per label set) and the scrape must add them all up."""
    import threading

    from prometheus_client import CollectorRegistry, generate_latest

    from dynavault.dynamodb.change_counter import ChangeCounter
    from dynavault.server.metrics import ThreadCellCounter

    registry = CollectorRegistry(auto_describe=False)
    family = ThreadCellCounter("dynavault_item_changes", "doc", ("cause", "event"), registry)
    counter = ChangeCounter(family)

    class Change:  # what the counter reads of a change
        cause, event = "PutItem", "INSERT"

    one, batch = [Change()], [Change()] * 3
    together = threading.Barrier(6)  # all alive at once (a finished thread's id may be handed out again)

    def commit() -> None:
        together.wait()
        for i in range(4000):
            counter.committed(one if i % 2 else batch)
        together.wait()

    threads = [threading.Thread(target=commit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(family._per_key[("PutItem", "INSERT")]) == 6  # a cell per thread, never one shared
    text = generate_latest(registry).decode()
    assert 'dynavault_item_changes_total{cause="PutItem",event="INSERT"} 48000.0' in text
