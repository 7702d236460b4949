"""Reads reuse the nodes they opened (storage/node_cache.py) only while the stored blob is byte for byte the same:
a changed, tampered or moved blob is opened (and fails) as without the cache; another store handle's write is
seen at once; the cache stays within its bound."""

from __future__ import annotations

import pytest

from dynavault.errors import IntegrityError
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.node_cache import NodeCache
from dynavault.storage.sealed import Sealed
from dynavault.storage.trees import EncryptedTrees, row_prefix
from tests.storage.test_trees import T1, GcmCodec, directories, tok


@pytest.fixture
def kv(tmp_path):
    store = SqliteKV(tmp_path / "t.db")
    yield store
    store.close()


def _trees(kv, **kw) -> EncryptedTrees:
    return EncryptedTrees(kv, max_leaf_bytes=512, max_inner_entries=4, node_cache=NodeCache(**kw))


def _fill(kv, trees, codec, n: int = 40, t: int = 1) -> dict[bytes, bytes]:
    model = {}
    with kv.transaction() as tx:
        for i in range(n):
            k = f"k{i:04d}".encode()
            v = f"value {i} ".encode() * 4
            trees.put(tx, codec, T1, 0, tok(t), k, v)
            model[k] = v
    return model


def _rows(kv, t: int) -> dict[bytes, bytes]:
    p = row_prefix(T1, 0, tok(t))
    return dict(kv.range(p, p[:-1] + bytes([p[-1] + 1])))


def test_a_second_read_opens_nothing_and_answers_the_same(kv) -> None:
    codec = GcmCodec()
    trees = _trees(kv)
    directories(kv, trees, codec)
    model = _fill(kv, trees, codec)
    assert len(_rows(kv, 1)) > 2  # an inner root over several leaves
    first = [trees.get(kv, codec, T1, 0, tok(1), k) for k in model]
    ranged = list(trees.range(kv, codec, T1, 0, tok(1)))
    codec.opens = 0
    assert [trees.get(kv, codec, T1, 0, tok(1), k) for k in model] == first == list(model.values())
    assert list(trees.range(kv, codec, T1, 0, tok(1))) == ranged == sorted(model.items())
    assert list(trees.range(kv, codec, T1, 0, tok(1), lo=b"k0010", hi=b"k0020", reverse=True)) == \
        sorted((k, v) for k, v in model.items() if b"k0010" <= k <= b"k0020")[::-1]
    assert trees.get(kv, codec, T1, 0, tok(1), b"absent") is None
    assert codec.opens == 0


def test_a_write_is_read_back_through_the_cache(kv) -> None:
    codec = GcmCodec()
    trees = _trees(kv)
    directories(kv, trees, codec)
    model = _fill(kv, trees, codec)
    for k in model:
        trees.get(kv, codec, T1, 0, tok(1), k)
    with kv.transaction() as tx:
        trees.put(tx, codec, T1, 0, tok(1), b"k0007", b"new")
        trees.delete(tx, codec, T1, 0, tok(1), b"k0008")
        assert trees.get(tx, codec, T1, 0, tok(1), b"k0007") == b"new"  # in the transaction, its own write
    assert trees.get(kv, codec, T1, 0, tok(1), b"k0007") == b"new"
    assert trees.get(kv, codec, T1, 0, tok(1), b"k0008") is None
    model[b"k0007"] = b"new"
    del model[b"k0008"]
    assert list(trees.range(kv, codec, T1, 0, tok(1))) == sorted(model.items())


def test_a_rolled_back_write_is_not_served(kv) -> None:
    codec = GcmCodec()
    trees = _trees(kv)
    directories(kv, trees, codec)
    _fill(kv, trees, codec)
    with pytest.raises(RuntimeError), kv.transaction() as tx:
        trees.put(tx, codec, T1, 0, tok(1), b"k0003", b"never")
        assert trees.get(tx, codec, T1, 0, tok(1), b"k0003") == b"never"  # cached from inside the transaction
        raise RuntimeError("roll back")
    assert trees.get(kv, codec, T1, 0, tok(1), b"k0003") == b"value 3 " * 4


def test_another_handle_on_the_store_changes_what_is_read(kv, tmp_path) -> None:
    codec = GcmCodec()
    trees = _trees(kv)
    directories(kv, trees, codec)
    _fill(kv, trees, codec)
    assert trees.get(kv, codec, T1, 0, tok(1), b"k0005") == b"value 5 " * 4
    other = SqliteKV(tmp_path / "t.db")  # as another worker process would: its own connections
    try:
        other_trees = EncryptedTrees(other, max_leaf_bytes=512, max_inner_entries=4)
        with other.transaction() as tx:
            other_trees.put(tx, codec, T1, 0, tok(1), b"k0005", b"from the other worker")
    finally:
        other.close()
    assert trees.get(kv, codec, T1, 0, tok(1), b"k0005") == b"from the other worker"
    assert dict(trees.range(kv, codec, T1, 0, tok(1)))[b"k0005"] == b"from the other worker"


def test_a_tampered_blob_fails_though_its_node_is_cached(kv) -> None:
    codec = GcmCodec()
    trees = _trees(kv)
    directories(kv, trees, codec)
    model = _fill(kv, trees, codec)
    for k in model:
        trees.get(kv, codec, T1, 0, tok(1), k)
    rows = _rows(kv, 1)
    assert len(trees.node_cache) == len(rows)
    for rk, blob in rows.items():
        bad = bytearray(blob)
        bad[-1] ^= 1
        with kv.transaction() as tx:
            tx.put(rk, Sealed(bytes(bad)))
        with pytest.raises(IntegrityError):
            for k in model:
                trees.get(kv, codec, T1, 0, tok(1), k)
        with pytest.raises(IntegrityError):
            list(trees.range(kv, codec, T1, 0, tok(1)))
        with kv.transaction() as tx:
            tx.put(rk, Sealed(blob))
    assert [trees.get(kv, codec, T1, 0, tok(1), k) for k in model] == list(model.values())


def test_a_blob_moved_to_another_partition_fails_though_cached(kv) -> None:
    codec = GcmCodec()
    trees = _trees(kv)
    directories(kv, trees, codec)
    _fill(kv, trees, codec, n=2, t=1)
    _fill(kv, trees, codec, n=2, t=2)
    assert trees.get(kv, codec, T1, 0, tok(1), b"k0001") is not None
    assert trees.get(kv, codec, T1, 0, tok(2), b"k0001") is not None
    (rk1, blob1), = _rows(kv, 1).items()
    (rk2, _), = _rows(kv, 2).items()
    with kv.transaction() as tx:
        tx.put(rk2, Sealed(blob1))  # partition 1's root, cached, planted as partition 2's
    with pytest.raises(IntegrityError):
        trees.get(kv, codec, T1, 0, tok(2), b"k0001")
    with pytest.raises(IntegrityError):
        list(trees.range(kv, codec, T1, 0, tok(2)))


def test_the_cache_stays_within_its_bound(kv) -> None:
    codec = GcmCodec()
    trees = _trees(kv, max_bytes=20_000, shape_bytes=4_000)
    directories(kv, trees, codec)
    for t in range(1, 30):
        model = _fill(kv, trees, codec, n=12, t=t)
        for _ in range(2):  # a leaf is kept from its second miss on
            for k in model:
                assert trees.get(kv, codec, T1, 0, tok(t), k) == model[k]
        assert trees.node_cache._bytes <= 20_000
        assert trees.node_cache._shape_used <= 4_000
    assert 0 < len(trees.node_cache._entries) < 29
    assert 0 < len(trees.node_cache._shape) < 29
    assert "value" not in repr(trees.node_cache)


def test_a_small_tree_read_in_one_statement_still_checks_every_node(kv) -> None:
    codec = GcmCodec()
    trees = EncryptedTrees(kv, max_leaf_bytes=512, max_inner_entries=4, node_cache=NodeCache())
    directories(kv, trees, codec)
    model = _fill(kv, trees, codec, n=14)
    rows = _rows(kv, 1)
    assert len(rows) == 3  # a root over two leaves: read with one range once the root is known
    for _ in range(2):
        assert [trees.get(kv, codec, T1, 0, tok(1), k) for k in model] == list(model.values())
    leaf_rk = next(rk for rk in rows if not rk.endswith(bytes(8)))
    with kv.transaction() as tx:
        tx.delete(leaf_rk)
    with pytest.raises(IntegrityError):
        for k in model:
            trees.get(kv, codec, T1, 0, tok(1), k)
    with kv.transaction() as tx:
        tx.put(leaf_rk, Sealed(rows[leaf_rk][:-1] + bytes([rows[leaf_rk][-1] ^ 1])))
    with pytest.raises(IntegrityError):
        for k in model:
            trees.get(kv, codec, T1, 0, tok(1), k)
    with kv.transaction() as tx:  # grown past what one statement reads: node by node again
        tx.put(leaf_rk, Sealed(rows[leaf_rk]))
    model.update(_fill(kv, trees, codec, n=40))
    assert len(_rows(kv, 1)) > 4
    assert [trees.get(kv, codec, T1, 0, tok(1), k) for k in model] == list(model.values())


class _Reads:
    """Counts what a read asks of the store (gets, pairs, ranges) and the rows that came back."""

    def __init__(self, kv: SqliteKV) -> None:
        self.kv = kv
        self.gets = self.pairs = self.ranges = self.rows = 0

    def get(self, key):
        self.gets += 1
        return self.kv.get(key)

    def get_pair(self, a, b):
        self.pairs += 1
        out = self.kv.get_pair(a, b)
        self.rows += sum(v is not None for v in out)
        return out

    def range(self, lo, hi, *, reverse=False, limit=None):
        self.ranges += 1
        out = list(self.kv.range(lo, hi, reverse=reverse, limit=limit))
        self.rows += len(out)
        return iter(out)


def test_a_one_leaf_partition_answers_in_one_read(kv, tmp_path) -> None:
    codec = GcmCodec()
    trees = EncryptedTrees(kv, max_leaf_bytes=4096, node_cache=NodeCache())
    directories(kv, trees, codec)
    model = _fill(kv, trees, codec, n=5)
    reads = _Reads(kv)
    # shape not known yet: the root alone, which is the whole partition
    assert trees.get_in_one_read(reads, codec, T1, 0, tok(1), b"k0001") == (True, model[b"k0001"])
    assert trees.get_in_one_read(reads, codec, T1, 0, tok(1), b"k0001") == (True, model[b"k0001"])
    assert trees.get_in_one_read(reads, codec, T1, 0, tok(1), b"nope") == (True, None)
    assert (reads.gets, reads.pairs, reads.ranges) == (3, 0, 0)  # a get of the root leaf each time
    other = SqliteKV(tmp_path / "t.db")  # another worker changes the leaf
    try:
        with other.transaction() as tx:
            EncryptedTrees(other).put(tx, codec, T1, 0, tok(1), b"k0001", b"changed")
    finally:
        other.close()
    assert trees.get_in_one_read(kv, codec, T1, 0, tok(1), b"k0001") == (True, b"changed")
    model = _fill(kv, trees, codec, n=200)  # grown into a root over leaves: the root and one leaf
    assert trees.get_in_one_read(reads, codec, T1, 0, tok(1), b"k0150") == (True, model[b"k0150"])
    assert (reads.gets, reads.pairs, reads.rows) == (4, 1, 2)


def test_a_vanished_one_leaf_partition_is_still_an_integrity_error(kv) -> None:
    codec = GcmCodec()
    trees = EncryptedTrees(kv, max_leaf_bytes=4096, node_cache=NodeCache())
    directories(kv, trees, codec)
    _fill(kv, trees, codec, n=5)
    assert trees.get(kv, codec, T1, 0, tok(1), b"k0001") is not None
    (rk, _), = _rows(kv, 1).items()
    with kv.transaction() as tx:
        tx.delete(rk)  # the partition directory still lists it
    assert trees.get_in_one_read(kv, codec, T1, 0, tok(1), b"k0001") == (False, None)


def test_a_cached_node_cannot_be_changed_in_place(kv) -> None:
    # every later reader, of any thread, is handed the same node: a change in place would be a wrong answer for
    # all of them, so it fails where it is made
    codec = GcmCodec()
    trees = _trees(kv)
    directories(kv, trees, codec)
    model = _fill(kv, trees, codec)
    assert [trees.get(kv, codec, T1, 0, tok(1), k) for k in model] == list(model.values())
    assert list(trees.range(kv, codec, T1, 0, tok(1))) == sorted(model.items())
    rows = _rows(kv, 1)
    nodes = [trees.node_cache.get(rk, blob) for rk, blob in rows.items()]
    assert len(nodes) > 2 and None not in nodes
    for node in nodes:
        for part in (node.keys, getattr(node, "vals", None), getattr(node, "kids", None)):
            if part is None:
                continue
            with pytest.raises((TypeError, AttributeError)):
                part[0] = part[-1]
            with pytest.raises(AttributeError):
                part.append(part[0])
    with kv.transaction() as tx:  # a write next to the cached nodes changes only what it writes
        trees.put(tx, codec, T1, 0, tok(1), b"k0003", b"changed")
    model[b"k0003"] = b"changed"
    assert [trees.get(kv, codec, T1, 0, tok(1), k) for k in model] == list(model.values())


def test_a_root_over_leaves_answers_with_the_leaf_it_names_in_one_statement(kv, tmp_path) -> None:
    codec = GcmCodec()
    trees = EncryptedTrees(kv, max_leaf_bytes=512, max_inner_entries=4, node_cache=NodeCache())
    directories(kv, trees, codec)
    model = _fill(kv, trees, codec, n=14)
    rows = _rows(kv, 1)
    assert len(rows) == 3  # a root over two leaves
    reads = _Reads(kv)
    # shape not known yet: the root alone, then the root again with the leaf it names, in one statement
    assert trees.get_in_one_read(reads, codec, T1, 0, tok(1), b"k0001") == (True, model[b"k0001"])
    assert (reads.gets, reads.pairs, reads.ranges, reads.rows) == (1, 1, 0, 2)
    for k in model:
        assert trees.get_in_one_read(reads, codec, T1, 0, tok(1), k) == (True, model[k])
    assert trees.get_in_one_read(reads, codec, T1, 0, tok(1), b"nope") == (True, None)
    # then one statement each, no snapshot around it, and only the root and the key's leaf are read
    assert (reads.gets, reads.pairs, reads.ranges) == (1, len(model) + 2, 0)
    assert reads.rows == 2 * (len(model) + 2)
    other = SqliteKV(tmp_path / "t.db")  # another worker changes an item
    try:
        with other.transaction() as tx:
            EncryptedTrees(other, max_leaf_bytes=512, max_inner_entries=4).put(tx, codec, T1, 0, tok(1), b"k0013",
                                                                               b"changed!" * 4)
    finally:
        other.close()
    assert trees.get_in_one_read(kv, codec, T1, 0, tok(1), b"k0013") == (True, b"changed!" * 4)
    rows = _rows(kv, 1)
    assert len(rows) == 3
    leaf_rk = next(rk for rk in rows if not rk.endswith(bytes(8)))
    with kv.transaction() as tx:  # a leaf vanished: the root read with it names it, so it is missing
        tx.delete(leaf_rk)
    with pytest.raises(IntegrityError):
        for k in model:
            trees.get_in_one_read(kv, codec, T1, 0, tok(1), k)
    with kv.transaction() as tx:  # a flipped bit in a cached leaf is opened, and fails
        tx.put(leaf_rk, Sealed(rows[leaf_rk][:-1] + bytes([rows[leaf_rk][-1] ^ 1])))
    with pytest.raises(IntegrityError):
        for k in model:
            trees.get_in_one_read(kv, codec, T1, 0, tok(1), k)
    with kv.transaction() as tx:
        tx.put(leaf_rk, Sealed(rows[leaf_rk]))
    _fill(kv, trees, codec, n=60)  # grown a level: not answered in one read
    assert len(_rows(kv, 1)) > 4
    assert trees.get_in_one_read(kv, codec, T1, 0, tok(1), b"k0001") == (False, None)
    _fill(kv, trees, codec, n=14, t=2)
    assert trees.get(kv, codec, T1, 0, tok(2), b"k0001") is not None
    with kv.transaction() as tx:
        for rk in _rows(kv, 2):
            tx.delete(rk)
    # the partition gone while the directory lists it: left to get, in a snapshot, which tells it is missing
    assert trees.get_in_one_read(kv, codec, T1, 0, tok(2), b"k0001") == (False, None)
    with pytest.raises(IntegrityError):
        trees.get(kv, codec, T1, 0, tok(2), b"k0001")


def test_a_leaf_read_once_is_searched_not_kept_and_kept_when_read_again(kv) -> None:
    codec = GcmCodec()
    trees = _trees(kv)
    directories(kv, trees, codec)
    model = _fill(kv, trees, codec, n=14)
    rows = _rows(kv, 1)
    assert len(rows) == 3  # a root over two leaves
    cache = trees.node_cache
    leaf_rks = [rk for rk in rows if not rk.endswith(bytes(8))]
    first, last = min(model), max(model)  # one in each leaf
    assert trees.get(kv, codec, T1, 0, tok(1), first) == model[first]
    assert not any(rk in cache._entries for rk in leaf_rks)  # read once: searched, not kept
    assert trees.get(kv, codec, T1, 0, tok(1), b"k0000x") is None  # the same leaf, a key it does not hold
    assert sum(rk in cache._entries for rk in leaf_rks) == 1  # read twice: kept; the other never read
    assert type(cache.peek(row_prefix(T1, 0, tok(1)) + bytes(8))).__name__ == "Inner"
    codec.opens = 0
    assert trees.get(kv, codec, T1, 0, tok(1), last) == model[last]  # first miss: opened, searched, not kept
    assert codec.opens == 1 and all(rk in cache._ghosts or rk in cache._entries for rk in leaf_rks)
    assert [trees.get(kv, codec, T1, 0, tok(1), k) for k in model] == list(model.values())
    codec.opens = 0
    assert [trees.get(kv, codec, T1, 0, tok(1), k) for k in model] == list(model.values())
    assert codec.opens == 0  # both leaves kept now
    with kv.transaction() as tx:  # a flipped bit is opened, and fails, kept or not
        for rk in leaf_rks:
            tx.put(rk, Sealed(rows[rk][:-1] + bytes([rows[rk][-1] ^ 1])))
    for k in (first, last):
        with pytest.raises(IntegrityError):
            trees.get(kv, codec, T1, 0, tok(1), k)
    cache.clear()
    with pytest.raises(IntegrityError):
        trees.get(kv, codec, T1, 0, tok(1), first)


def test_leaves_streaming_through_do_not_push_out_the_inner_nodes(kv) -> None:
    codec = GcmCodec()
    trees = _trees(kv, max_bytes=8_000, ghost_entries=0)  # room for a few leaves, every leaf kept
    directories(kv, trees, codec)
    models = {t: _fill(kv, trees, codec, n=14, t=t) for t in range(1, 21)}
    for t, model in models.items():
        for k in model:
            assert trees.get(kv, codec, T1, 0, tok(t), k) == model[k]
    cache = trees.node_cache
    assert cache._bytes <= 8_000 and len(cache._entries) < 10
    roots = [row_prefix(T1, 0, tok(t)) + bytes(8) for t in models]
    assert all(type(cache.peek(rk)).__name__ == "Inner" for rk in roots)  # every partition's shape still known
    reads = _Reads(kv)
    for t, model in models.items():
        assert trees.get_in_one_read(reads, codec, T1, 0, tok(t), min(model)) == (True, model[min(model)])
    assert (reads.gets, reads.pairs, reads.ranges) == (0, len(models), 0)


def test_an_empty_partition_is_read_in_a_snapshot_without_a_statement_first(kv) -> None:
    codec = GcmCodec()
    trees = _trees(kv)
    directories(kv, trees, codec)
    reads = _Reads(kv)
    assert trees.get_in_one_read(reads, codec, T1, 0, tok(3), b"k0001") == (False, None)  # no root
    assert trees.get(kv, codec, T1, 0, tok(3), b"k0001") is None  # the snapshot read: empty, not vanished
    assert trees.get_in_one_read(reads, codec, T1, 0, tok(3), b"k0001") == (False, None)
    assert (reads.gets, reads.pairs, reads.ranges) == (1, 0, 0)  # the second time, no statement before the snapshot
    model = _fill(kv, trees, codec, n=3, t=3)
    assert trees.get(kv, codec, T1, 0, tok(3), b"k0001") == model[b"k0001"]  # seen again: its shape known
    assert trees.get_in_one_read(reads, codec, T1, 0, tok(3), b"k0001") == (True, model[b"k0001"])
