"""kill -9 during point-in-time work: a restore to a point in time resumes after the restart and completes
with exactly that instant's items (never ACTIVE half-done); a base snapshot whose copy died is taken again,
and PITR works on."""

from __future__ import annotations

import time

from tests.dynamodb.test_backups_crash import N, _fill, _progress, _rows, _scan_count, _table
from tests.dynamodb.test_pitr import at, enable, ms_client, restore
from tests.lifecycle import wait_status

ACCOUNT = "123456789012"


def test_kill_during_a_point_in_time_restore_resumes(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    ddb = ms_client(srv)
    _table(ddb, unique_name)
    _fill(ddb, unique_name)  # in the base snapshot
    enable(ddb, unique_name)
    restore(ddb, unique_name, unique_name + "-warm", UseLatestRestorableTime=True)  # the base is complete
    ddb.delete_table(TableName=unique_name + "-warm")
    for i in range(5):  # history: five items changed, one deleted
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i:05d}"}, "v": {"N": "1"}})
    ddb.delete_item(TableName=unique_name, Key={"pk": {"S": "k00009"}})
    time.sleep(0.01)
    instant = time.time()
    time.sleep(0.01)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "k00000"}, "v": {"N": "2"}})  # after the instant
    target = unique_name + "-r"
    ddb.restore_table_to_point_in_time(SourceTableName=unique_name, TargetTableName=target,
                                       RestoreDateTime=at(instant))
    _progress(srv.data_dir, target)
    srv.kill()
    srv.start()
    ddb = ms_client(srv)
    assert ddb.describe_table(TableName=target)["Table"]["TableStatus"] in ("CREATING", "ACTIVE")
    table = wait_status(ddb, target, "ACTIVE", 60)
    assert table["ItemCount"] == N - 1 and _scan_count(ddb, target) == N - 1
    assert ddb.get_item(TableName=target, Key={"pk": {"S": "k00000"}})["Item"]["v"] == {"N": "1"}
    assert "Item" not in ddb.get_item(TableName=target, Key={"pk": {"S": "k00009"}})
    assert ddb.get_item(TableName=target, Key={"pk": {"S": "k00042"}})["Item"]["v"] == {"N": "0"}
    assert "resuming at" in srv.log_text()


def test_kill_during_the_base_copy_takes_it_again(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    ddb = ms_client(srv)
    _table(ddb, unique_name)
    _fill(ddb, unique_name)
    enable(ddb, unique_name)
    srv.kill()  # the base snapshot's copy (N rows of 1 KB) is most likely still running
    srv.start()
    ddb = ms_client(srv)
    desc = ddb.describe_continuous_backups(TableName=unique_name)["ContinuousBackupsDescription"]
    assert desc["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "after"}, "v": {"N": "3"}})
    table = restore(ddb, unique_name, unique_name + "-r", UseLatestRestorableTime=True)
    assert table["ItemCount"] == N + 1
    assert ddb.get_item(TableName=unique_name + "-r", Key={"pk": {"S": "after"}})["Item"]["v"] == {"N": "3"}
    # no copy of a dead base is left behind: the base data in the store is one base's worth
    rows = _rows(srv.data_dir, b"\x00\x00backupdata\x00")
    assert len({k[len(b"\x00\x00backupdata\x00"):][:16] for k, _ in rows}) == 1
