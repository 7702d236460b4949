"""Group commit: concurrent writes share fsyncs, and no response leaves before its data is on disk."""

from __future__ import annotations

import re
import threading
import urllib.request

from tests.conftest import make_table


def _gauges(srv) -> dict[str, float]:
    text = urllib.request.urlopen(srv.endpoint + "/metrics", timeout=5).read().decode()
    out = {}
    for name in ("dynavault_store_commits", "dynavault_store_durable_commits", "dynavault_store_group_syncs"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else -1.0
    return out


def _client(srv):
    return srv.client("dynamodb", max_pool_connections=1)

def test_every_acknowledged_write_is_already_synced(start_server):
    srv = start_server(allow_any_credentials=True)
    ddb = _client(srv)
    make_table(ddb, "gcommit")
    for i in range(5):
        ddb.put_item(TableName="gcommit", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
        g = _gauges(srv)
        # the acknowledgement came back, so the commit it made is covered by a finished fsync
        assert g["dynavault_store_commits"] > 0
        assert g["dynavault_store_durable_commits"] == g["dynavault_store_commits"]


def test_concurrent_writers_share_fsyncs(start_server):
    srv = start_server(allow_any_credentials=True)
    make_table(_client(srv), "gcommit")
    before = _gauges(srv)
    threads, per_thread = 16, 25
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        ddb = _client(srv)
        try:
            for i in range(per_thread):
                ddb.put_item(TableName="gcommit", Item={"pk": {"S": f"t{t}-{i}"}, "v": {"N": str(i)}})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    after = _gauges(srv)
    commits = after["dynavault_store_commits"] - before["dynavault_store_commits"]
    syncs = after["dynavault_store_group_syncs"] - before["dynavault_store_group_syncs"]
    assert commits >= threads * per_thread
    assert 1 <= syncs < commits  # fsyncs were shared
    assert after["dynavault_store_durable_commits"] == after["dynavault_store_commits"]
    ddb = _client(srv)
    for t in range(threads):
        keys = [{"pk": {"S": f"t{t}-{i}"}} for i in range(per_thread)]
        got = ddb.batch_get_item(RequestItems={"gcommit": {"Keys": keys}})["Responses"]["gcommit"]
        assert sorted(int(x["v"]["N"]) for x in got) == list(range(per_thread))


def test_reads_commit_nothing_and_wait_for_no_fsync(start_server):
    srv = start_server(allow_any_credentials=True)
    ddb = _client(srv)
    make_table(ddb, "reads", range_type="S")
    for i in range(5):
        ddb.put_item(TableName="reads", Item={"pk": {"S": "p"}, "sk": {"S": f"s{i}"}})
    before = _gauges(srv)
    for _ in range(10):  # Query and TransactGetItems read through a snapshot transaction
        assert ddb.query(TableName="reads", KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "p"}})["Count"] == 5
        ddb.transact_get_items(TransactItems=[{"Get": {"TableName": "reads", "Key": {"pk": {"S": "p"},
                                                                                       "sk": {"S": "s1"}}}}])
        ddb.get_item(TableName="reads", Key={"pk": {"S": "p"}, "sk": {"S": "s2"}})
    assert _gauges(srv) == before


def test_commit_mode_each_fsyncs_inside_every_commit(start_server):
    srv = start_server(allow_any_credentials=True, commit_mode="each")
    ddb = _client(srv)
    make_table(ddb, "each")
    ddb.put_item(TableName="each", Item={"pk": {"S": "a"}, "v": {"S": "x"}})
    assert _gauges(srv)["dynavault_store_group_syncs"] == 0  # no group commit in this mode
    srv.restart()
    assert _client(srv).get_item(TableName="each", Key={"pk": {"S": "a"}})["Item"]["v"]["S"] == "x"


def test_unknown_commit_mode_is_refused(start_server, tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "dynavault.cli", "serve", "--allow-any-credentials", "--port", "0",
         "--data-dir", str(tmp_path / "d"), "--root-key-file", str(tmp_path / "k" / "root.key"),
         "--commit-mode", "sometimes"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0
    assert "commit_mode" in out.stderr


def test_the_fsync_thread_syncs_every_round_and_stops_on_close_even_when_wake_ups_coalesce(tmp_path):
    """The fsync thread sleeps on a lock that a round or a close releases; two releases before it wakes are
    one wake-up. A round asked for and a close that follows at once must still give a synced round and a
    thread that ends (not one asleep for ever, with close() waiting on it)."""
    import asyncio

    from dynavault.server.durability import GroupCommit
    from dynavault.storage.kv.sqlite import SqliteKV
    from dynavault.storage.sealed import Sealed

    kv = SqliteKV(tmp_path / "t.db", group_commit=True)

    async def rounds_then_close(gc: GroupCommit, n: int) -> None:
        for i in range(n):  # plain rounds, one after the other
            with kv.transaction() as tx:
                tx.put(i.to_bytes(4, "big"), Sealed(b"x" * 40))
            await gc.settle()
            assert gc.durable_seq == kv.commit_seq
        with kv.transaction() as tx:
            tx.put(b"last", Sealed(b"y" * 40))
        # what settle() does to ask for a round, then close() at once (what it does before it joins the thread)
        gc._loop = asyncio.get_running_loop()
        asked = gc._round = gc._loop.create_future()
        gc._signal()
        gc._closed = True
        gc._signal()
        gc._thread.join(10)
        assert not gc._thread.is_alive()
        await asyncio.wait_for(asked, 10)
        assert gc.durable_seq == kv.commit_seq

    for _ in range(20):
        gc = GroupCommit(kv)
        asyncio.run(rounds_then_close(gc, 3))
        gc.close()  # a second close returns at once
    kv.close()
