"""The listener's request flow over a raw socket: requests sent back to back (several in one packet) are
answered in order, writes that wait for the group commit included; a client that stops sending after its
request still gets the answer; and under a remote KMS (the engine run in a thread) the same holds."""

from __future__ import annotations

import socket

import cbor2

from dynavault.dax import protocol as P
from tests.conftest import make_table
from tests.dax import raw
from tests.dax.daxclient import free_port


def _id_for(c: raw.Conn, names: list[str]) -> int:
    c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST_ID, names))
    kind, (list_id,) = c.response()
    assert kind == "ok"
    return list_id


def _back_to_back(srv, table: str, key: str = "AKIAEXAMPLE000000001") -> None:
    c = raw.Conn(int(srv.settings["dax_port"]))
    c.send(raw.handshake() + raw.authorize(key, "x"))
    list_id = _id_for(c, ["v"])
    burst = b""
    for i in range(20):
        burst += raw.request(P.PUT_ITEM, table.encode(), f"k{i}".encode(), cbor2.dumps(list_id) + cbor2.dumps(i),
                             None)
        burst += raw.request(P.GET_ITEM, table.encode(), f"k{i}".encode(), {P.Param.CONSISTENT_READ: True})
        burst += raw.request(P.GET_ITEM, table.encode(), f"k{i}".encode(), None)
    c.send(burst)  # one sendall: the server finds many requests in one read
    for i in range(20):
        kind, (put,) = c.response()
        assert kind == "ok" and put == {}
        for _ in range(2):
            kind, (got,) = c.response()
            assert kind == "ok"
            values = got[P.Result.ITEM]
            assert cbor2.loads(values[:1]) == list_id and cbor2.loads(values[1:]) == i
    # the client shuts its sending side right after a write: the answer still comes, then the close
    c.send(raw.request(P.PUT_ITEM, table.encode(), b"last", cbor2.dumps(list_id) + cbor2.dumps(99), None))
    c.sock.shutdown(socket.SHUT_WR)
    kind, (put,) = c.response()
    assert kind == "ok"
    assert c.closed()


def test_requests_back_to_back_are_answered_in_order(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, dax_port=free_port())
    make_table(srv.client("dynamodb", access_key="AKIAEXAMPLE000000001"), unique_name)
    _back_to_back(srv, unique_name)
    assert "Traceback" not in srv.log_text()


def test_requests_under_a_remote_kms_run_in_a_thread_and_keep_their_order(start_server, unique_name):
    kms_srv = start_server("kms", kms_only=True, allow_any_credentials=True, trusted_service_keys="db-service")
    db = start_server("db", allow_any_credentials=True, kms_endpoint=kms_srv.endpoint, dax_port=free_port(),
                      kms_access_key_id="db-service", kms_secret_access_key="unused")
    make_table(db.client("dynamodb", access_key="AKIAEXAMPLE000000001"), unique_name)
    _back_to_back(db, unique_name)
    assert "Traceback" not in db.log_text()
