"""The attribute-list registry outlives the server (clients cache ids forever), is sealed at rest, bounded per
account and tamper-evident; a table whose KMS key is disabled fails over DAX as it fails over HTTP."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from dynavault.dax import protocol as P
from dynavault.dynamodb.layout import DAX_ATTRIBUTE_LISTS_PREFIX
from dynavault.storage.kv.base import prefix_end
from tests.canary import rows_under, scan
from tests.conftest import make_table
from tests.dax import raw
from tests.dax.conftest import dax_server
from tests.dax.daxclient import free_port


def _restart_when_asked(dax, marker, go) -> threading.Thread:
    def run():
        deadline = time.time() + 60
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.05)
        dax.srv.restart()
        # another client registers a list before the old one comes back: a registry that started over would
        # hand it the id the old client has cached for other names
        c = _raw_session(dax)
        c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST_ID, ["zeta", "eta"]))
        assert c.response()[0] == "ok"
        c.close()
        go.write_text("restarted")

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_cached_attribute_list_ids_still_decode_after_a_restart(start_server, dax_py, tmp_path, unique_name):
    dax = dax_server(start_server(dax_port=free_port()))
    http = dax.http()
    make_table(http, unique_name)
    marker, go = tmp_path / "phase1", tmp_path / "go"
    thread = _restart_when_asked(dax, marker, go)
    res = dax.run(dax_py, f'''
        import os, time
        T = {unique_name!r}
        dax.put_item(TableName=T, Item={{"pk": {{"S": "a"}}, "alpha": {{"S": "A"}}, "beta": {{"N": "1"}}}})
        dax.put_item(TableName=T, Item={{"pk": {{"S": "b"}}, "gamma": {{"S": "G"}}}})
        out("before", [dax.get_item(TableName=T, Key={{"pk": {{"S": k}}}})["Item"] for k in "ab"])
        open({str(marker)!r}, "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
        def retry(call, **kw):
            for _ in range(60):
                try:
                    return call(**kw)
                except Exception as e:
                    last = e
                    time.sleep(0.5)
            raise last
        # both lists are in this client's cache by id: the server must still mean the same names by them
        out("after", [retry(dax.get_item, TableName=T, Key={{"pk": {{"S": k}}}})["Item"] for k in "ab"])
        retry(dax.put_item, TableName=T, Item={{"pk": {{"S": "c"}}, "gamma": {{"S": "G2"}}}})
    ''')
    thread.join(5)
    # a fresh client after the restart registers a new list first: it must get a new id, not a reused one
    fresh = dax.run(dax_py, f'''
        T = {unique_name!r}
        dax.put_item(TableName=T, Item={{"pk": {{"S": "d"}}, "delta": {{"S": "D"}}}})
        out("c", dax.get_item(TableName=T, Key={{"pk": {{"S": "c"}}}})["Item"])
    ''')
    expected = [{"pk": {"S": "a"}, "alpha": {"S": "A"}, "beta": {"N": "1"}}, {"pk": {"S": "b"}, "gamma": {"S": "G"}}]
    assert res["before"] == expected and res["after"] == expected
    assert fresh["c"] == {"pk": {"S": "c"}, "gamma": {"S": "G2"}}
    assert http.get_item(TableName=unique_name, Key={"pk": {"S": "d"}})["Item"]["delta"] == {"S": "D"}
    # and the old client's view of an item written over HTTP after the restart, with a list it never saw
    http.put_item(TableName=unique_name, Item={"pk": {"S": "e"}, "alpha": {"S": "A2"}, "beta": {"N": "2"}})
    again = dax.run(dax_py, f'''
        out("e", dax.get_item(TableName={unique_name!r}, Key={{"pk": {{"S": "e"}}}})["Item"])
    ''')
    assert again["e"] == {"pk": {"S": "e"}, "alpha": {"S": "A2"}, "beta": {"N": "2"}}


def test_attribute_names_are_sealed_at_rest(start_server, dax_py, unique_name):
    dax = dax_server(start_server(dax_port=free_port()))
    make_table(dax.http(), unique_name)
    canary = "zqxDAXattrCANARY"
    dax.run(dax_py, f'''
        dax.put_item(TableName={unique_name!r}, Item={{"pk": {{"S": "k"}}, {canary!r} + "1": {{"S": "v"}},
                                                    "other": {{"N": "1"}}}})
        out("id", dax.get_item(TableName={unique_name!r}, Key={{"pk": {{"S": "k"}}}})["Item"])
    ''')
    dax.srv.stop()
    data = dax.srv.data_dir
    assert rows_under(data / "tables.db", DAX_ATTRIBUTE_LISTS_PREFIX) >= 4  # key, count, list, lookup
    assert scan([data, dax.srv.log_path], [canary]) == []


def _raw_session(dax) -> raw.Conn:
    c = raw.Conn(int(dax.srv.settings["dax_port"]))
    c.send(raw.handshake() + raw.authorize(dax.key, dax.secret))
    return c


def test_registry_is_bounded_per_account(start_server):
    dax = dax_server(start_server(dax_port=free_port(), dax_attribute_lists_max=3))
    c = _raw_session(dax)
    ids = []
    for names in (["a"], ["b"], ["c"], ["a"]):
        c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST_ID, names))
        kind, (list_id,) = c.response()
        ids.append(list_id)
    assert ids[0] == ids[3] and len(set(ids[:3])) == 3
    c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST_ID, ["d"]))
    kind, _codes, _message, detail = c.response()
    assert kind == "error" and detail[1] == "LimitExceededException"
    c.close()
    # and a list holds no more names than an item could carry (400 KB): the count bounds the bytes too
    dax = dax_server(start_server("other", dax_port=free_port()))
    c = _raw_session(dax)
    c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST_ID, [f"{i:06d}" + "n" * 1000 for i in range(420)]))
    kind, _codes, _message, detail = c.response()
    assert kind == "error" and detail[1] == "ValidationException"
    c.close()


def test_a_moved_registry_row_is_an_integrity_error(start_server):
    dax = dax_server(start_server(dax_port=free_port()))
    c = _raw_session(dax)
    ids = {}
    for names in (["first", "x"], ["second"]):
        c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST_ID, names))
        ids[names[0]] = c.response()[1][0]
    c.close()
    dax.srv.stop()
    con = sqlite3.connect(dax.srv.data_dir / "tables.db")
    rows = dict(con.execute("SELECT k, v FROM kv WHERE k >= ? AND k < ?",
                            (DAX_ATTRIBUTE_LISTS_PREFIX, prefix_end(DAX_ATTRIBUTE_LISTS_PREFIX))))
    (a,) = [k for k in rows if k.endswith(b"i" + ids["first"].to_bytes(8, "big"))]
    (b,) = [k for k in rows if k.endswith(b"i" + ids["second"].to_bytes(8, "big"))]
    con.execute("UPDATE kv SET v = ? WHERE k = ?", (rows[b], a))  # the second list's blob under the first's id
    con.commit()
    con.close()
    dax.srv.start()
    c = _raw_session(dax)
    c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST, ids["first"]))
    kind, _codes, _message, detail = c.response()
    assert kind == "error" and detail[1] == "InternalServerError"  # never the second list's names
    c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST, ids["second"]))
    assert c.response() == ("ok", [["second"]])
    c.close()
    assert "integrity error on DAX defineAttributeList" in dax.srv.log_text()


def test_a_disabled_key_fails_over_dax_as_over_http(start_server, dax_py, unique_name):
    dax = dax_server(start_server(dax_port=free_port(), key_refresh_seconds=1))
    http = dax.http()
    kms = dax.srv.client("kms", access_key=dax.key, secret=dax.secret)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    make_table(http, unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_id})
    c = _raw_session(dax)
    c.send(raw.request(P.GET_ITEM, unique_name.encode(), b"k", None))
    assert c.response() == ("ok", [{}])
    kms.disable_key(KeyId=key_id)
    time.sleep(1.5)  # past the key refresh interval: the cached table key must not be used any more
    c.send(raw.request(P.GET_ITEM, unique_name.encode(), b"k", None))
    kind, codes, message, detail = c.response()
    from botocore.exceptions import ClientError

    try:
        http.get_item(TableName=unique_name, Key={"pk": {"S": "k"}})
    except ClientError as exc:
        http_error = exc.response["Error"]
    else:
        raise AssertionError("HTTP read a table whose key is disabled")
    assert kind == "error" and detail[1] == http_error["Code"]
    assert message.split("Request ID")[0] == http_error["Message"].split("Request ID")[0]  # KMS's own id differs
    assert "disabled" in message
    c.close()


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _cpu(pid: int) -> int:
    return sum(int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
               for t in os.listdir(f"/proc/{pid}/task"))


def test_every_worker_process_hands_out_the_same_ids(start_server):
    """--workers 2: the workers share the DAX port (SO_REUSEPORT) and the store; lists registered in a
    different order on connections spread over both still get one id each, everywhere."""
    srv = start_server(allow_any_credentials=True, workers=2, dax_port=free_port())
    deadline = time.time() + 60
    while sum("DAX listening" in line for line in srv.stdout_lines) < 2 and time.time() < deadline:
        time.sleep(0.1)
    workers = [p for p in _children(srv.proc.pid) if "resource_tracker" not in
               Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    before = {p: _cpu(p) for p in workers}
    names = [[f"attr{j}", "shared"] for j in range(8)]
    seen: dict[str, set] = {}
    for i in range(16):
        c = raw.Conn(int(srv.settings["dax_port"]))
        c.send(raw.handshake() + raw.authorize("111122223333", "any"))
        order = names[i % 8:] + names[:i % 8]
        for n in order:
            c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST_ID, n))
            kind, (list_id,) = c.response()
            seen.setdefault(n[0], set()).add(list_id)
        c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST, min(next(iter(v)) for v in seen.values())))
        assert c.response()[0] == "ok"
        c.close()
    assert all(len(ids) == 1 for ids in seen.values()), seen
    assert len({next(iter(ids)) for ids in seen.values()}) == len(names)
    assert len(workers) == 2 and all(_cpu(p) > before[p] for p in workers), "both workers must have served"
