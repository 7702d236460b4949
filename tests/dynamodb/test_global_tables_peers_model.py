"""Across two servers, global tables converge by last writer wins: a seeded random history of writes in random
regions, with random pauses and random cuts of the network between the servers (each side keeps serving its
region meanwhile), then both replicas equal the model's state (each key's last write, deletes included)."""

from __future__ import annotations

import random
import time

import pytest

from tests.conftest import make_table
from tests.dynamodb.gt_util import EAST, WEST, add_replica, converge, wait_replicas
from tests.dynamodb.test_global_tables_peers import Forwarder, free_port, pair

ACCOUNT = "789012345678"


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    """Two servers reaching each other through forwarders the test can cut and heal."""
    base = tmp_path_factory.mktemp("peersmodel")
    pa, pb = free_port(), free_port()
    to_b, to_a = Forwarder(pb), Forwarder(pa)
    a, b = pair(base, (ACCOUNT, "x"), (ACCOUNT, "x"), ports=(pa, pb), peer_ports=(to_b.port, to_a.port),
                allow_any_credentials=True)
    yield a, b, (to_b, to_a)
    a.kill()
    b.kill()
    to_b.close()
    to_a.close()


def random_step(rnd: random.Random, clients: dict, name: str, model: dict, step: int) -> None:
    """One write of the model test (test_global_tables_model): a put (sometimes with a large binary) or a
    delete of one of a few keys, in a random region; ``model`` keeps each key's last write."""
    region = rnd.choice(sorted(clients))
    key = f"k{rnd.randrange(12)}"
    if rnd.random() < 0.25:
        clients[region].delete_item(TableName=name, Key={"pk": {"S": key}})
        model.pop(key, None)
    else:
        item = {"pk": {"S": key}, "v": {"N": str(step)}, "at": {"S": region}}
        if rnd.random() < 0.3:
            item["big"] = {"B": rnd.randbytes(rnd.randrange(1, 2000))}
        clients[region].put_item(TableName=name, Item=item)
        model[key] = item


@pytest.mark.parametrize("seed", [11, 12])
def test_random_writes_on_two_servers_with_cuts_converge_to_the_model(linked, unique_name, seed):
    a, b, links = linked
    rnd = random.Random(seed)
    c = {EAST: a.client("dynamodb", access_key=ACCOUNT, region=EAST),
         WEST: b.client("dynamodb", access_key=ACCOUNT, region=WEST)}
    make_table(c[EAST], unique_name)
    add_replica(c[EAST], unique_name, WEST)
    wait_replicas(c[EAST], unique_name)
    model: dict[str, dict] = {}
    cut, cuts = False, 0
    try:
        for step in range(120):
            random_step(rnd, c, unique_name, model, step)
            x = rnd.random()
            if x < 0.05:  # the network between the servers goes down, or comes back
                cut, cuts = not cut, cuts + cut
                for link in links:
                    link.cut() if cut else link.heal()
            elif x < 0.25:
                time.sleep(rnd.uniform(0, 0.1))
    finally:
        for link in links:
            link.heal()
    assert cuts >= 1  # the seed cut the network at least once (and healed it)
    converge(list(c.values()), unique_name, model, timeout=60)
