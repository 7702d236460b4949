"""The per-connection table-key cache, counted in the audit trail (DESIGN.md "Key cache")."""

from __future__ import annotations

import time
import urllib.request

from tests.conftest import make_table

REFRESH = 3  # key_refresh_seconds: long enough that GETS requests usually fit in one interval
GETS = 200  # requests on one connection: one Decrypt serves them all (tests/sse/test_table_key_cache.py: 1000)


def _decrypts(srv, table_name: str) -> int:
    ct = srv.client("cloudtrail")
    count = 0
    kwargs: dict = {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "Decrypt"}]}
    while True:
        page = ct.lookup_events(**kwargs)
        for event in page["Events"]:
            if table_name in event["CloudTrailEvent"]:
                count += 1
        if not page.get("NextToken"):
            return count
        kwargs["NextToken"] = page["NextToken"]


def _fresh_client(srv):
    # a new client = a new connection pool = a new TCP connection
    return srv.client("dynamodb", max_pool_connections=1)


def test_decrypt_once_per_connection_and_refresh(start_server):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=REFRESH)
    kms = srv.client("kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    ddb = _fresh_client(srv)
    created = time.monotonic()  # the cached entry is no older than this
    make_table(ddb, "cached", sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key})
    ddb.put_item(TableName="cached", Item={"pk": {"S": "k"}, "v": {"S": "x"}})
    filled = time.monotonic()  # the entry was filled before this, so it is stale REFRESH s after it
    base = _decrypts(srv, "cached")
    assert base == 1
    start = time.monotonic()
    for _ in range(GETS):
        assert ddb.get_item(TableName="cached", Key={"pk": {"S": "k"}})["Item"]["v"]["S"] == "x"
    elapsed = time.monotonic() - start
    # On a loaded machine the loop may outlast the interval: each interval crossed is one refresh (a miss).
    refreshes = _decrypts(srv, "cached") - base
    if elapsed < REFRESH and time.monotonic() - created < REFRESH:  # all within one interval: no further Decrypt
        assert refreshes == 0
    assert refreshes <= (time.monotonic() - created) // REFRESH
    # wait out the entry in use: the first one (filled before ``filled``) or, after a refresh, one filled by now
    stale_at = (filled if refreshes == 0 else time.monotonic()) + REFRESH + 0.2
    time.sleep(max(0.0, stale_at - time.monotonic()))
    ddb.get_item(TableName="cached", Key={"pk": {"S": "k"}})
    after_refresh = _decrypts(srv, "cached")
    assert after_refresh == base + 1 + refreshes

    for _ in range(50):
        client = _fresh_client(srv)
        client.get_item(TableName="cached", Key={"pk": {"S": "k"}})
        client.close()
    assert _decrypts(srv, "cached") == after_refresh + 50

    # the metrics endpoint shows the cache at work
    text = urllib.request.urlopen(srv.endpoint + "/metrics").read().decode()
    hits = [line for line in text.splitlines() if line.startswith('dynavault_key_cache_total{result="hit"}')]
    assert hits and float(hits[0].split()[-1]) >= GETS - refreshes


def _cache_entries(srv) -> float:
    text = urllib.request.urlopen(srv.endpoint + "/metrics").read().decode()
    return float(next(line.split()[-1] for line in text.splitlines()
                      if line.startswith("dynavault_key_cache_entries ")))


def _wait_no_entries(srv, timeout: float = 5.0) -> None:
    """The server sees a closed connection a moment after the client closes it: poll, up to a deadline."""
    deadline = time.monotonic() + timeout
    while _cache_entries(srv) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _cache_entries(srv) == 0


def test_closed_connection_drops_its_entries(start_server):
    srv = start_server(allow_any_credentials=True)
    setup = _fresh_client(srv)
    for name in ("conn-a", "conn-b"):
        make_table(setup, name)
        setup.put_item(TableName=name, Item={"pk": {"S": "k"}})
    setup.close()
    _wait_no_entries(srv)
    client = _fresh_client(srv)
    client.get_item(TableName="conn-a", Key={"pk": {"S": "k"}})
    client.get_item(TableName="conn-b", Key={"pk": {"S": "k"}})
    assert _cache_entries(srv) == 2
    client.close()
    _wait_no_entries(srv)
