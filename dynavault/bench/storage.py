"""In-process micro-benchmark of the storage path: EncryptedTrees over SqliteKV, AEAD codec vs identity.

The identity codec lives only in this module and is constructed only by :func:`storage_bench`; nothing
in server configuration can reach it, so it measures the cost of encryption without being a way around it.
"""

from __future__ import annotations

import os
import random
import tempfile
import time

from dynavault.bench.load import PARTITION_SIZE
from dynavault.sse.crypto import NodeCipher
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.sealed import PartitionToken, Sealed
from dynavault.storage.trees import EncryptedTrees

__all__ = ["storage_bench"]


class _IdentityCodec:
    """Stores node plaintext as is. Benchmark-only baseline; never used by the server."""

    __slots__ = ()

    def seal(self, aad: bytes, plaintext: bytes) -> Sealed:
        return Sealed(plaintext)

    def open(self, aad: bytes, sealed: Sealed) -> bytes:
        return sealed.raw


def _one(codec, items: int, item_size: int, seconds: float, synchronous: str, directory: str) -> dict:
    path = os.path.join(directory, f"bench-{type(codec).__name__}-{os.urandom(4).hex()}.db")
    kv = SqliteKV(path, synchronous=synchronous)
    trees = EncryptedTrees(kv)
    table_id = os.urandom(16)
    rnd = random.Random(7)
    tokens = [PartitionToken(os.urandom(32)) for _ in range((items + PARTITION_SIZE - 1) // PARTITION_SIZE)]
    value = os.urandom(item_size // 2).hex().encode()[:item_size]

    def key(i: int) -> tuple[PartitionToken, bytes]:
        return tokens[i // PARTITION_SIZE], b"s%05d" % (i % PARTITION_SIZE)

    try:
        with kv.transaction() as tx:
            trees.create_directory(tx, codec, table_id, 0)  # as CreateTable does
        t0 = time.perf_counter()
        for start in range(0, items, PARTITION_SIZE):  # load: one transaction per partition
            with kv.transaction() as tx:
                for i in range(start, min(items, start + PARTITION_SIZE)):
                    tok, k = key(i)
                    trees.put(tx, codec, table_id, 0, tok, k, value)
        load_s = time.perf_counter() - t0

        def rate(fn) -> float:
            n = 0
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                for _ in range(50):
                    fn()
                n += 50
            return n / seconds

        def get() -> None:
            tok, k = key(rnd.randrange(items))
            if trees.get(kv, codec, table_id, 0, tok, k) != value:
                raise AssertionError("storage bench read back a wrong value")

        counter = [0]

        def put() -> None:  # one durable transaction per put, like a PutItem
            # A fresh value every time: SQLite skips writing (and fsyncing) a row overwritten with
            # identical bytes, which would flatter the identity codec (AEAD output always differs).
            counter[0] += 1
            tok, k = key(rnd.randrange(items))
            with kv.transaction() as tx:
                trees.put(tx, codec, table_id, 0, tok, k, b"%08d" % counter[0] + value[8:])

        get_rate = rate(get)
        put_rate = rate(put)
        return {"get_per_s": get_rate, "put_per_s": put_rate, "load_s": load_s,
                "bytes_on_disk": _disk(path)}
    finally:
        kv.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass


def _disk(path: str) -> int:
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


def storage_bench(items: int = 2000, item_size: int = 1024, seconds: float = 2.0, rounds: int = 2,
                  synchronous: str = "FULL", directory: str | None = None) -> dict:
    """Alternates identity and AEAD rounds (to spread noise evenly) and keeps each one's best."""
    aead = NodeCipher({1: os.urandom(32)}, 1)
    ident = _IdentityCodec()
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=directory) as d:
        for _ in range(rounds):
            for name, codec in (("identity", ident), ("aead", aead)):
                r = _one(codec, items, item_size, seconds, synchronous, d)
                b = best.setdefault(name, r)
                for k in ("get_per_s", "put_per_s"):
                    b[k] = max(b[k], r[k])
    out: dict = {"items": items, "item_size": item_size, "synchronous": synchronous, "rounds": rounds}
    for name, r in best.items():
        out[name] = {"get_per_s": round(r["get_per_s"], 1), "put_per_s": round(r["put_per_s"], 1),
                     "load_s": round(r["load_s"], 3), "bytes_on_disk": r["bytes_on_disk"],
                     "bytes_per_item": round(r["bytes_on_disk"] / items, 1)}
    for k in ("get_per_s", "put_per_s"):
        out[f"encryption_cost_{k[:3]}_pct"] = round(100 * (1 - best["aead"][k] / best["identity"][k]), 2)
    return out
