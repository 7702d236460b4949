"""Global tables converge by last writer wins: a seeded random history of writes in random regions with random
pauses, then every replica equals the model's state; concurrent writers on the same items in every region end
with every replica holding the same value."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.dynamodb.gt_util import EAST, EU, WEST, converge, global_table, items
from tests.wire import signed_request

#: short key-cache life: an injected KMS outage pauses replication to a region within a second
SERVER_SETTINGS = {"allow_any_credentials": True, "key_refresh_seconds": 1}
ACCOUNT = "345678901234"
REGIONS = (EAST, WEST, EU)


@pytest.fixture(scope="module")
def c(srv):
    return {r: srv.client("dynamodb", access_key=ACCOUNT, region=r) for r in REGIONS}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_writes_in_random_regions_converge_to_the_model(c, unique_name, seed):
    rnd = random.Random(seed)
    global_table(c, unique_name, list(REGIONS))
    model: dict[str, dict] = {}
    for step in range(150):
        region = rnd.choice(REGIONS)
        key = f"k{rnd.randrange(12)}"
        if rnd.random() < 0.25:
            c[region].delete_item(TableName=unique_name, Key={"pk": {"S": key}})
            model.pop(key, None)
        else:
            item = {"pk": {"S": key}, "v": {"N": str(step)}, "at": {"S": region}}
            if rnd.random() < 0.3:
                item["big"] = {"B": rnd.randbytes(rnd.randrange(1, 2000))}
            c[region].put_item(TableName=unique_name, Item=item)
            model[key] = item
        if rnd.random() < 0.2:
            time.sleep(rnd.uniform(0, 0.05))
    converge(list(c.values()), unique_name, model, timeout=30)


def test_concurrent_writers_in_every_region_converge(c, srv, unique_name):
    global_table(c, unique_name, list(REGIONS))
    written: dict[str, set] = {f"k{i}": set() for i in range(5)}
    lock = threading.Lock()

    def writer(region: str, seed: int) -> None:
        client = srv.client("dynamodb", access_key=ACCOUNT, region=region)
        rnd = random.Random(seed)
        for n in range(60):
            key = f"k{rnd.randrange(5)}"
            value = f"{region}-{n}"
            client.put_item(TableName=unique_name, Item={"pk": {"S": key}, "v": {"S": value}})
            with lock:
                written[key].add(value)

    threads = [threading.Thread(target=writer, args=(r, i)) for i, r in enumerate(REGIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = converge(list(c.values()), unique_name, timeout=30)
    assert set(final) <= set(written)
    for key, item in final.items():
        assert item["v"]["S"] in written[key]
    time.sleep(0.5)  # still equal once nothing is in flight: no write travels back and forth
    assert converge(list(c.values()), unique_name) == final


def test_a_paused_replica_catches_up_to_the_last_writer(c, srv, unique_name):
    """Replication to eu-west-1 paused (its KMS unreachable) while both other regions write the same items, in
    turns: once it resumes it applies one region's queue, then the other's, and must still end with each
    item's last write, not the last one applied."""
    global_table(c, unique_name, list(REGIONS))
    fault = signed_request(srv.endpoint, "DynavaultAdmin.PutFault", {"TableName": unique_name, "KmsUnavailable": True},
                           access_key=ACCOUNT, region=EU)
    assert fault.status == 200, fault.body
    time.sleep(1.5)  # every cached key of the table in eu-west-1 has expired
    model = {}
    rnd = random.Random(7)
    for step in range(60):
        region = (WEST, EAST)[step % 2]  # east's turn last: its queue is applied before west's
        key = f"k{rnd.randrange(6)}"
        item = {"pk": {"S": key}, "v": {"N": str(step)}}
        c[region].put_item(TableName=unique_name, Item=item)
        model[key] = item
    converge([c[EAST], c[WEST]], unique_name, model)
    time.sleep(0.5)
    gone = signed_request(srv.endpoint, "DynavaultAdmin.DeleteFault", {"FaultId": fault.json()["FaultId"]},
                          access_key=ACCOUNT, region=EU)
    assert gone.status == 200, gone.body
    converge(list(c.values()), unique_name, model, timeout=30)
    assert items(c[EU], unique_name) == model


def test_a_delete_racing_a_put_from_another_region_wins(c, unique_name):
    """A delete made right after a put in another region usually finds nothing here yet (replication takes a
    few milliseconds): it is still the later write, and the put must not come back after it."""
    global_table(c, unique_name, list(REGIONS))
    for i in range(20):
        c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}, "v": {"S": "put"}})
        c[WEST].delete_item(TableName=unique_name, Key={"pk": {"S": f"k{i}"}})
    c[EU].put_item(TableName=unique_name, Item={"pk": {"S": "last"}})
    time.sleep(0.5)
    converge(list(c.values()), unique_name, {"last": {"pk": {"S": "last"}}})
