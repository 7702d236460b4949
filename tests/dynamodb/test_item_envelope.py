"""Stored items carry a versioned envelope; data dirs written before it still open and read.

``tests/fixtures/datadir-before-envelope`` was written by the release before the envelope (commit
5fad087): table ``legacy`` (hash ``pk`` S, range ``sk`` N, GSI ``byg`` on ``g``/``sk``) with 30 items
``pk = p{i % 5}, sk = i, g = g{i % 3}, note = "legacy item {i}"``, its root key beside it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from boto3.dynamodb.conditions import Key

from dynavault.config import Settings
from dynavault.dynamodb import envelope
from dynavault.dynamodb.catalog import TableMeta
from dynavault.dynamodb.index_model import entry_for, index_defs
from dynavault.dynamodb.keys import key_of_request
from dynavault.errors import IntegrityError
from dynavault.offline import OfflineStore

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "datadir-before-envelope"


def test_envelope_round_trip_and_unknown_versions() -> None:
    item = b'{"pk":{"S":"a"}}'
    assert envelope.item_json(envelope.seal_item(item)) == item
    sealed = envelope.seal_item(item, {"ttl": 1700000000})
    assert envelope.version(sealed) == 1
    assert envelope.item_json(sealed) == item
    assert envelope.metadata(sealed) == {"ttl": 1700000000}
    assert envelope.metadata(envelope.seal_item(item)) == {}
    assert envelope.version(item) == 0 and envelope.item_json(item) == item  # the bare JSON of before
    for bad in (b"\x02" + item, b"[1]", b""):
        with pytest.raises(IntegrityError):
            envelope.item_json(bad)


def _stored(data: Path, root_key: Path, key: dict) -> tuple[bytes, list[bytes]]:
    """The raw stored values of one item of ``legacy``: its base value and its GSI entry."""
    store = OfflineStore(Settings(data_dir=str(data), root_key_file=str(root_key)), readonly=True)
    try:
        meta = next(TableMeta.from_record(raw) for _, raw in store.catalog())
        crypto = store.crypto(meta)
        hkey, skey, _ = key_of_request(meta, key)
        base = store.trees.get(store.kv, crypto.codec, meta.id_bytes, 0, crypto.token(0, hkey), skey)
        item = envelope.open_item(base)
        entries = []
        for idx in index_defs(meta):
            token, tkey, _ = entry_for(idx, meta, crypto, item)
            entries.append(store.trees.get(store.kv, crypto.codec, meta.id_bytes, idx.index_id, token, tkey))
        return base, entries
    finally:
        store.close()


def test_a_data_dir_from_before_the_envelope_opens_reads_and_is_rewritten_by_writes(tmp_path, start_server):
    shutil.copytree(FIXTURE, tmp_path / "old")
    data, root_key = tmp_path / "old" / "data", tmp_path / "old" / "root.key"
    root_key.chmod(0o600)  # git keeps no file modes but the executable bit: a checkout has it 0644
    untouched = {"pk": {"S": "p1"}, "sk": {"N": "6"}}
    changed = {"pk": {"S": "p2"}, "sk": {"N": "7"}}
    base, entries = _stored(data, root_key, changed)
    assert envelope.version(base) == 0 and [envelope.version(e) for e in entries] == [0]

    srv = start_server(data_dir=data, root_key_file=root_key, allow_any_credentials=True)
    table = srv.resource().Table("legacy")
    assert table.table_status == "ACTIVE" and table.item_count == 30
    assert table.get_item(Key={"pk": "p1", "sk": 6})["Item"] == {"pk": "p1", "sk": 6, "g": "g0",
                                                                "note": "legacy item 6"}
    assert sorted(int(i["sk"]) for i in table.scan()["Items"]) == list(range(30))
    got = table.query(IndexName="byg", KeyConditionExpression=Key("g").eq("g1"))["Items"]
    assert sorted(int(i["sk"]) for i in got) == [i for i in range(30) if i % 3 == 1]
    table.update_item(Key={"pk": "p2", "sk": 7}, UpdateExpression="SET note = :n",
                      ExpressionAttributeValues={":n": "rewritten"})
    assert table.get_item(Key={"pk": "p2", "sk": 7})["Item"]["note"] == "rewritten"
    srv.stop()

    base, entries = _stored(data, root_key, changed)
    assert envelope.version(base) == 1 and [envelope.version(e) for e in entries] == [1]
    assert envelope.open_item(base)["note"] == {"S": "rewritten"}
    base, entries = _stored(data, root_key, untouched)
    assert envelope.version(base) == 0 and [envelope.version(e) for e in entries] == [0]
