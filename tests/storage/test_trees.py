"""EncryptedTrees against a dict model, with a real AES-GCM codec; tamper evidence; isolation; tokens."""

from __future__ import annotations

import os
import random
import sqlite3
from bisect import bisect_left

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from dynavault.dynamodb.keyorder import encode_key_value
from dynavault.errors import IntegrityError
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.sealed import PartitionToken, Sealed
from dynavault.storage.trees import ROOT_ID, EncryptedTrees, row_prefix, segment_bounds


class GcmCodec:
    """AES-256-GCM with a random 96-bit nonce; the AAD is exactly what storage passes in."""

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = AESGCM(key or AESGCM.generate_key(256))
        self.seals = 0
        self.opens = 0

    def seal(self, aad: bytes, plaintext: bytes) -> Sealed:
        self.seals += 1
        nonce = os.urandom(12)
        return Sealed(nonce + self._aead.encrypt(nonce, plaintext, aad))

    def open(self, aad: bytes, sealed: Sealed) -> bytes:
        self.opens += 1
        raw = sealed.raw
        try:
            return self._aead.decrypt(raw[:12], raw[12:], aad)
        except InvalidTag:
            raise IntegrityError("node failed authentication") from None


class CountingKV:
    """Delegates to a real store and counts calls (to pin down the hot path's cost)."""

    def __init__(self, kv: SqliteKV) -> None:
        self.kv = kv
        self.gets = 0
        self.puts = 0

    def get(self, key):
        self.gets += 1
        return self.kv.get(key)

    def range(self, lo, hi, *, reverse=False, limit=None):
        return self.kv.range(lo, hi, reverse=reverse, limit=limit)

    def put(self, key, value):
        self.puts += 1
        self._tx.put(key, value)

    def delete(self, key):
        self._tx.delete(key)


T1, T2 = b"\x11" * 16, b"\x22" * 16


def tok(i: int) -> PartitionToken:
    return PartitionToken(i.to_bytes(32, "big"))


def directories(kv, trees, codec, *pairs) -> None:
    """Every (table, index) a test writes to gets its partition directory first, as CreateTable does."""
    with kv.transaction() as tx:
        for table_id, index_id in pairs or ((T1, 0),):
            trees.create_directory(tx, codec, table_id, index_id)


def rows(kv, table_id, index_id=None, token=None) -> list[tuple[bytes, bytes]]:
    p = row_prefix(table_id, index_id, token)
    return list(kv.range(p, p + b"\xff" * 80))


@pytest.fixture
def kv(tmp_path):
    store = SqliteKV(tmp_path / "t.db")
    yield store
    store.close()


# ---------------------------------------------------------------------------------------------------
# Rule-based: random puts/deletes/ranges over several partitions, tables and indexes, vs a dict model.

KEYS = st.binary(min_size=0, max_size=5).map(lambda b: bytes(x % 7 for x in b))  # small alphabet: collisions
VALUES = st.binary(max_size=48)
PARTS = st.sampled_from([(T1, 0, tok(1)), (T1, 0, tok(2)), (T1, 3, tok(1)), (T2, 0, tok(1))])
BOUND = st.none() | KEYS


class TreeMachine(RuleBasedStateMachine):
    @initialize(leaf=st.sampled_from([64, 128, 300]), inner=st.sampled_from([4, 5, 9]))
    def setup(self, leaf: int, inner: int) -> None:
        self.kv = SqliteKV(":memory:")
        self.codec = GcmCodec()
        self.trees = EncryptedTrees(self.kv, max_leaf_bytes=leaf, max_inner_entries=inner)
        directories(self.kv, self.trees, self.codec, (T1, 0), (T1, 3), (T2, 0))
        self.model: dict[tuple, dict[bytes, bytes]] = {}

    def teardown(self) -> None:
        if hasattr(self, "kv"):
            self.kv.close()

    def _m(self, part) -> dict[bytes, bytes]:
        return self.model.setdefault(part, {})

    @rule(part=PARTS, key=KEYS, value=VALUES)
    def put(self, part, key, value) -> None:
        with self.kv.transaction() as tx:
            old = self.trees.put(tx, self.codec, *part, key, value)
        assert old == self._m(part).get(key)
        self._m(part)[key] = value

    @rule(part=PARTS, keys=st.lists(KEYS, min_size=5, max_size=150), value=VALUES)
    def put_many(self, part, keys, value) -> None:
        with self.kv.transaction() as tx:
            for i, k in enumerate(keys):
                v = value + bytes([i])
                assert self.trees.put(tx, self.codec, *part, k, v) == self._m(part).get(k)
                self._m(part)[k] = v

    @rule(part=PARTS, key=KEYS)
    def delete(self, part, key) -> None:
        with self.kv.transaction() as tx:
            old = self.trees.delete(tx, self.codec, *part, key)
        assert old == self._m(part).pop(key, None)

    @rule(part=PARTS, data=st.data())
    def delete_many(self, part, data) -> None:
        m = self._m(part)
        if not m:
            return
        doomed = data.draw(st.lists(st.sampled_from(sorted(m)), max_size=len(m), unique=True))
        with self.kv.transaction() as tx:
            for k in doomed:
                assert self.trees.delete(tx, self.codec, *part, k) == m.pop(k)

    @rule(part=PARTS, lo=KEYS, hi=KEYS)
    def delete_span(self, part, lo, hi) -> None:
        """Contiguous deletes empty whole leaves and subtrees: merges at every level."""
        m = self._m(part)
        doomed = [k for k in sorted(m) if min(lo, hi) <= k <= max(lo, hi)]
        with self.kv.transaction() as tx:
            for k in doomed:
                assert self.trees.delete(tx, self.codec, *part, k) == m.pop(k)

    @rule(part=PARTS, key=KEYS, value=VALUES)
    def rolled_back_write(self, part, key, value) -> None:
        with pytest.raises(RuntimeError), self.kv.transaction() as tx:
            self.trees.put(tx, self.codec, *part, key, value)
            self.trees.delete(tx, self.codec, *part, key + b"\x01")
            raise RuntimeError("abort")

    @rule(part=PARTS, key=KEYS)
    def get(self, part, key) -> None:
        assert self.trees.get(self.kv, self.codec, *part, key) == self._m(part).get(key)

    @rule(part=PARTS, lo=BOUND, hi=BOUND, lo_inc=st.booleans(), hi_inc=st.booleans(), rev=st.booleans())
    def range(self, part, lo, hi, lo_inc, hi_inc, rev) -> None:
        got = list(
            self.trees.range(
                self.kv, self.codec, *part, lo=lo, lo_inclusive=lo_inc, hi=hi, hi_inclusive=hi_inc, reverse=rev
            )
        )
        want = sorted(
            (k, v)
            for k, v in self._m(part).items()
            if (lo is None or k > lo or (lo_inc and k == lo)) and (hi is None or k < hi or (hi_inc and k == hi))
        )
        assert got == (want[::-1] if rev else want)

    @precondition(lambda self: hasattr(self, "model"))
    @invariant()
    def partitions_match_and_empty_ones_leave_no_rows(self) -> None:
        for part, m in self.model.items():
            assert list(self.trees.range(self.kv, self.codec, *part)) == sorted(m.items())
            n = len(rows(self.kv, *part))
            assert (n == 0) == (not m)
        live = {p[2] for p, m in self.model.items() if m and p[:2] == (T1, 0)}
        assert list(self.trees.tokens(self.kv, self.codec, T1, 0)) == sorted(live)


TestTreeMachine = TreeMachine.TestCase
TestTreeMachine.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)


# ---------------------------------------------------------------------------------------------------


def test_large_partition_grows_inner_nodes_and_merges_back(kv) -> None:
    codec = GcmCodec()
    trees = EncryptedTrees(kv)  # production sizes: 16 KiB leaves, 256-entry inner nodes
    directories(kv, trees, codec)
    t = tok(7)
    rnd = random.Random(1)
    nums = list(range(-2000, 2000))  # ~20 production-size leaves under an inner root
    rnd.shuffle(nums)
    model: dict[bytes, bytes] = {}
    for start in range(0, len(nums), 2000):
        with kv.transaction() as tx:
            for n in nums[start : start + 2000]:
                k = encode_key_value("N", f"{n}E-1")
                v = rnd.randbytes(rnd.randrange(20, 120))
                assert trees.put(tx, codec, T1, 0, t, k, v) is None
                model[k] = v
    assert len(model) == 4000
    n_rows = len(rows(kv, T1, 0, t))
    total = sum(len(k) + len(v) + 8 for k, v in model.items())
    # an inner root plus at least total/16KiB leaves (and, since leaves are >= 1/4 full, not too many)
    assert total // 16384 + 1 < n_rows <= total // (16384 // 4) + 2
    got = list(trees.range(kv, codec, T1, 0, t))
    assert got == sorted(model.items())
    # numeric order, not text order: -200.0 ... -0.1, 0, 0.1 ... 199.9
    assert [k for k, _ in got] == [encode_key_value("N", f"{n}E-1") for n in sorted(nums)]
    assert list(trees.range(kv, codec, T1, 0, t, reverse=True)) == got[::-1]
    lo, hi = encode_key_value("N", "-10"), encode_key_value("N", "10.5")
    want = [(k, model[k]) for k in (encode_key_value("N", f"{n}E-1") for n in range(-100, 106))]
    assert list(trees.range(kv, codec, T1, 0, t, lo=lo, hi=hi)) == want
    assert list(trees.range(kv, codec, T1, 0, t, lo=lo, hi=hi, lo_inclusive=False, reverse=True)) == want[1:][::-1]

    # delete most items in random order: leaves merge, the tree shrinks back to one leaf, then nothing
    doomed = list(model)
    rnd.shuffle(doomed)
    with kv.transaction() as tx:
        for k in doomed[:-100]:
            assert trees.delete(tx, codec, T1, 0, t, k) == model.pop(k)
    assert list(trees.range(kv, codec, T1, 0, t)) == sorted(model.items())
    assert len(rows(kv, T1, 0, t)) == 1  # 100 small items fit in the root leaf again
    with kv.transaction() as tx:
        for k in doomed[-100:]:
            trees.delete(tx, codec, T1, 0, t, k)
    assert rows(kv, T1, 0, t) == []


def test_deep_tree_three_levels(kv) -> None:
    codec = GcmCodec()
    trees = EncryptedTrees(kv, max_leaf_bytes=512, max_inner_entries=8)
    directories(kv, trees, codec)
    t = tok(3)
    keys = [os.urandom(8) for _ in range(3000)]
    with kv.transaction() as tx:
        for k in keys:
            trees.put(tx, codec, T1, 0, t, k, k * 3)
    leaves_min = sum(8 + 32 for _ in keys) // 512
    assert len(rows(kv, T1, 0, t)) > leaves_min + leaves_min // 8  # leaves + more than one inner level
    for k in keys[:200]:
        assert trees.get(kv, codec, T1, 0, t, k) == k * 3
    assert [k for k, _ in trees.range(kv, codec, T1, 0, t)] == sorted(keys)
    with kv.transaction() as tx:
        for k in keys:
            assert trees.delete(tx, codec, T1, 0, t, k) == k * 3
    assert rows(kv, T1, 0, t) == []


def test_big_values_and_keys(kv) -> None:
    codec = GcmCodec()
    trees = EncryptedTrees(kv, max_leaf_bytes=1024, max_inner_entries=4)
    directories(kv, trees, codec)
    t = tok(4)
    model = {}
    with kv.transaction() as tx:
        for i in range(60):
            k = bytes([i]) * (1 + (i * 37) % 1500)  # keys up to 1.5 KB: separators get truncated
            v = os.urandom((i * 997) % 5000)  # values larger than a leaf
            trees.put(tx, codec, T1, 0, t, k, v)
            model[k] = v
    assert list(trees.range(kv, codec, T1, 0, t)) == sorted(model.items())
    with kv.transaction() as tx:
        for k in list(model)[::2]:
            assert trees.delete(tx, codec, T1, 0, t, k) == model.pop(k)
    assert list(trees.range(kv, codec, T1, 0, t)) == sorted(model.items())


def test_hot_path_costs_one_get_one_open_one_seal_one_put(kv) -> None:
    codec = GcmCodec()
    counting = CountingKV(kv)
    trees = EncryptedTrees(counting)
    directories(kv, trees, codec)
    t = tok(9)
    with kv.transaction() as tx:
        counting._tx = tx
        trees.put(counting, codec, T1, 0, t, b"a", b"1")
        trees.put(counting, codec, T1, 0, t, b"b", b"2")
        counting.gets = counting.puts = codec.seals = codec.opens = 0
        assert trees.put(counting, codec, T1, 0, t, b"c", b"3") is None
        assert (counting.gets, codec.opens, codec.seals, counting.puts) == (1, 1, 1, 1)
    counting.gets = codec.opens = 0
    assert trees.get(counting, codec, T1, 0, t, b"b") == b"2"
    assert (counting.gets, codec.opens) == (1, 1)
    # a miss in an empty partition costs one get, then one directory lookup (a one-leaf directory here)
    counting.gets = codec.opens = 0
    assert trees.get(counting, codec, T1, 0, tok(10), b"b") is None
    assert (counting.gets, codec.opens) == (2, 1)
    # deleting an absent key writes nothing
    with kv.transaction() as tx:
        counting._tx = tx
        counting.puts = codec.seals = 0
        assert trees.delete(counting, codec, T1, 0, t, b"zz") is None
        assert (counting.puts, codec.seals) == (0, 0)


def test_slot_reads_and_writes_with_one_descent(kv) -> None:
    codec = GcmCodec()
    counting = CountingKV(kv)
    trees = EncryptedTrees(counting)
    directories(kv, trees, codec)
    t = tok(11)
    with kv.transaction() as tx:
        counting._tx = tx
        empty = trees.slot(counting, codec, T1, 0, t, b"a")
        assert empty.value is None
        empty.put(b"1")  # an empty partition gets its root leaf
        with pytest.raises(RuntimeError):
            empty.put(b"again")
        trees.put(counting, codec, T1, 0, t, b"b", b"2")
        counting.gets = counting.puts = codec.seals = codec.opens = 0
        place = trees.slot(counting, codec, T1, 0, t, b"b")
        assert place.value == b"2" and repr(place) == "Slot(present=True)"
        place.put(b"22")  # read, then replace: one get, one open, one seal, one put
        assert (counting.gets, codec.opens, codec.seals, counting.puts) == (1, 1, 1, 1)
        gone = trees.slot(counting, codec, T1, 0, t, b"a")
        gone.delete()
        absent = trees.slot(counting, codec, T1, 0, t, b"zz")
        counting.puts = codec.seals = 0
        absent.delete()  # nothing there: no write
        assert (counting.puts, codec.seals) == (0, 0)
    assert [(k, v) for k, v in trees.range(kv, codec, T1, 0, t)] == [(b"b", b"22")]


def test_isolation_between_tables_indexes_partitions_and_drop(kv) -> None:
    codec = GcmCodec()
    trees = EncryptedTrees(kv)
    directories(kv, trees, codec, (T1, 0), (T1, 1), (T2, 0))
    parts = [(T1, 0, tok(1)), (T1, 0, tok(2)), (T1, 1, tok(1)), (T2, 0, tok(1))]
    with kv.transaction() as tx:
        for i, p in enumerate(parts):
            trees.put(tx, codec, *p, b"same-key", bytes([i]))
    for i, p in enumerate(parts):
        assert trees.get(kv, codec, *p, b"same-key") == bytes([i])
    with kv.transaction() as tx:
        trees.drop(tx, T1, 1)
    assert rows(kv, T1, 1) == []
    with pytest.raises(IntegrityError):  # its directory went with it: the index is gone, not empty
        trees.get(kv, codec, T1, 1, tok(1), b"same-key")
    assert trees.get(kv, codec, T1, 0, tok(1), b"same-key") == bytes([0])
    with kv.transaction() as tx:
        trees.drop(tx, T1)
    assert rows(kv, T1) == []
    assert trees.get(kv, codec, T2, 0, tok(1), b"same-key") == bytes([3])


def test_type_boundary(kv) -> None:
    codec = GcmCodec()
    trees = EncryptedTrees(kv)
    directories(kv, trees, codec)
    with kv.transaction() as tx:
        with pytest.raises(TypeError):
            trees.put(tx, codec, T1, 0, b"\x00" * 32, b"k", b"v")  # raw bytes are not a PartitionToken
        with pytest.raises(TypeError):
            trees.put(tx, codec, b"short", 0, tok(1), b"k", b"v")
        with pytest.raises(TypeError):
            trees.put(tx, codec, T1, 0, tok(1), "k", b"v")

    class PlainCodec:  # a codec that "forgets" to seal cannot get plaintext past the KV boundary
        def seal(self, aad, plaintext):
            return plaintext

        def open(self, aad, sealed):
            return codec.open(aad, sealed)

    with pytest.raises(TypeError), kv.transaction() as tx:
        trees.put(tx, PlainCodec(), T1, 0, tok(1), b"k", b"v")
    with pytest.raises(TypeError), kv.transaction() as tx:
        trees.create_directory(tx, PlainCodec(), T2, 0)
    assert rows(kv, T1) == []


def test_wrong_key_is_integrity_error(kv) -> None:
    trees = EncryptedTrees(kv)
    codec = GcmCodec()
    directories(kv, trees, codec)
    with kv.transaction() as tx:
        trees.put(tx, codec, T1, 0, tok(1), b"k", b"v")
    with pytest.raises(IntegrityError):
        trees.get(kv, GcmCodec(), T1, 0, tok(1), b"k")


# ---------------------------------------------------------------------------------------------------
# Tamper evidence, done directly on the database file through a separate sqlite3 connection.


def _raw(path):
    return sqlite3.connect(path, isolation_level=None)


def _set(path, key: bytes, value: bytes) -> None:
    with _raw(path) as c:
        c.execute("UPDATE kv SET v = ? WHERE k = ?", (value, key))


@pytest.fixture
def filled(tmp_path):
    path = str(tmp_path / "tamper.db")
    kv = SqliteKV(path)
    codec = GcmCodec()
    trees = EncryptedTrees(kv, max_leaf_bytes=256, max_inner_entries=4)
    directories(kv, trees, codec, (T1, 0), (T2, 0), (T1, 5))
    with kv.transaction() as tx:
        for p in [(T1, 0, tok(1)), (T1, 0, tok(2)), (T2, 0, tok(1)), (T1, 5, tok(1))]:
            trees.put(tx, codec, *p, b"key", b"value-" + p[0][:1] + bytes([p[1]]) + p[2].raw[-1:])
        for i in range(200):  # a multi-node partition
            trees.put(tx, codec, T1, 0, tok(3), i.to_bytes(2, "big"), b"x" * 20)
    yield path, kv, codec, trees
    kv.close()


def _reads(trees, kv, codec, part, key=b"key"):
    return [lambda: trees.get(kv, codec, *part, key), lambda: list(trees.range(kv, codec, *part))]


def test_flipped_byte_is_integrity_error(filled) -> None:
    path, kv, codec, trees = filled
    [(k, v)] = rows(kv, T1, 0, tok(1))
    for pos in (0, 5, len(v) // 2, len(v) - 1):
        bad = bytearray(v)
        bad[pos] ^= 0x01
        _set(path, k, bytes(bad))
        for read in _reads(trees, kv, codec, (T1, 0, tok(1))):
            with pytest.raises(IntegrityError):
                read()
    _set(path, k, v)  # restored: reads work again, proving the failures came from the flips
    assert trees.get(kv, codec, T1, 0, tok(1), b"key") == b"value-\x11\x00\x01"


@pytest.mark.parametrize(
    "a,b",
    [
        ((T1, 0, tok(1)), (T1, 0, tok(2))),  # across partitions
        ((T1, 0, tok(1)), (T2, 0, tok(1))),  # across tables, same token
        ((T1, 0, tok(1)), (T1, 5, tok(1))),  # across indexes
    ],
    ids=["partitions", "tables", "indexes"],
)
def test_swapped_rows_are_integrity_errors(filled, a, b) -> None:
    path, kv, codec, trees = filled
    [(ka, va)] = rows(kv, *a)
    [(kb, vb)] = rows(kv, *b)
    _set(path, ka, vb)
    _set(path, kb, va)
    for part in (a, b):
        for read in _reads(trees, kv, codec, part):
            with pytest.raises(IntegrityError):
                read()
    with pytest.raises(IntegrityError), kv.transaction() as tx:  # writes read first, so they fail too
        trees.put(tx, codec, *a, b"key", b"new")


def test_moved_node_is_integrity_error(filled) -> None:
    path, kv, codec, trees = filled
    part = (T1, 0, tok(3))
    all_rows = rows(kv, *part)
    assert len(all_rows) > 3
    root_key = row_prefix(*part) + ROOT_ID.to_bytes(8, "big")
    leaves = [(k, v) for k, v in all_rows if k != root_key]
    (k1, v1), (k2, v2) = leaves[0], leaves[-1]
    # 1) one node's blob placed at another node id
    _set(path, k2, v1)
    with pytest.raises(IntegrityError):
        list(trees.range(kv, codec, *part))
    _set(path, k2, v2)
    assert len(list(trees.range(kv, codec, *part))) == 200
    # 2) a child blob moved into the root position
    root_v = kv.get(root_key)
    _set(path, root_key, v1)
    with pytest.raises(IntegrityError):
        trees.get(kv, codec, *part, (5).to_bytes(2, "big"))
    _set(path, root_key, root_v)
    # 3) a row re-keyed to a different node id: the parent's pointer now misses
    with _raw(path) as c:
        c.execute("UPDATE kv SET k = ? WHERE k = ?", (k1[:-8] + os.urandom(8), k1))
    with pytest.raises(IntegrityError):
        list(trees.range(kv, codec, *part))


# ---------------------------------------------------------------------------------------------------


def test_tokens_order_bounds_after_reverse_and_segments(kv) -> None:
    codec = GcmCodec()
    trees = EncryptedTrees(kv, max_leaf_bytes=128, max_inner_entries=4)
    directories(kv, trees, codec, (T1, 0), (T1, 1), (T2, 0))
    rnd = random.Random(5)
    toks = sorted({PartitionToken(rnd.randbytes(32)) for _ in range(60)} | {tok(0), PartitionToken(b"\xff" * 32)})
    with kv.transaction() as tx:
        for i, t in enumerate(toks):
            n = 40 if i % 7 == 0 else 1  # some partitions span many rows
            for j in range(n):
                trees.put(tx, codec, T1, 0, t, j.to_bytes(2, "big"), b"v" * 10)
        trees.put(tx, codec, T1, 1, tok(5), b"k", b"other index")
        trees.put(tx, codec, T2, 0, tok(6), b"k", b"other table")
    assert len(rows(kv, T1, 0, toks[0])) > 1
    assert list(trees.tokens(kv, codec, T1, 0)) == toks
    assert list(trees.tokens(kv, codec, T1, 0, reverse=True)) == toks[::-1]
    mid = toks[20]
    assert list(trees.tokens(kv, codec, T1, 0, after=mid)) == toks[21:]
    assert list(trees.tokens(kv, codec, T1, 0, after=mid, reverse=True)) == toks[:20][::-1]
    lo, hi = toks[10].raw, toks[30].raw
    assert list(trees.tokens(kv, codec, T1, 0, token_lo=lo, token_hi=hi)) == toks[10:30]
    assert list(trees.tokens(kv, codec, T1, 0, token_lo=lo, token_hi=hi, after=toks[14])) == toks[15:30]
    assert list(trees.tokens(kv, codec, T1, 0, token_lo=lo, token_hi=hi, reverse=True)) == toks[10:30][::-1]
    assert list(trees.tokens(kv, codec, T1, 1)) == [tok(5)]
    for total in (1, 3, 7):
        seen = []
        for seg in range(total):
            a, b = segment_bounds(seg, total)
            part = list(trees.tokens(kv, codec, T1, 0, token_lo=a, token_hi=b))
            assert all(a <= t.raw and (b is None or t.raw < b) for t in part)
            seen += part
        assert seen == toks
    with kv.transaction() as tx:
        for j in range(40):
            trees.delete(tx, codec, T1, 0, toks[0], j.to_bytes(2, "big"))
    assert list(trees.tokens(kv, codec, T1, 0)) == toks[1:]


def test_range_with_keyorder_tuples(kv) -> None:
    """Sort keys in DynamoDB order through the tree: numbers numerically, bounds exclusive/inclusive."""
    codec = GcmCodec()
    trees = EncryptedTrees(kv, max_leaf_bytes=200, max_inner_entries=4)
    directories(kv, trees, codec)
    nums = ["-1e10", "-2.5", "-1", "0", "0.001", "1", "1.5", "2", "10", "100", "1e20"]
    shuffled = nums[:]
    random.Random(2).shuffle(shuffled)
    with kv.transaction() as tx:
        for n in shuffled:
            trees.put(tx, codec, T1, 0, tok(1), encode_key_value("N", n), n.encode())
    got = [v.decode() for _, v in trees.range(kv, codec, T1, 0, tok(1))]
    assert got == nums
    lo, hi = encode_key_value("N", "-1"), encode_key_value("N", "10")
    got = [v.decode() for _, v in trees.range(kv, codec, T1, 0, tok(1), lo=lo, lo_inclusive=False, hi=hi)]
    assert got == nums[nums.index("-1") + 1 : nums.index("10") + 1]
    i = bisect_left([encode_key_value("N", n) for n in nums], encode_key_value("N", "1.0"))
    assert nums[i] == "1"


def test_vanished_or_renamed_partition_is_integrity_error_not_empty(tmp_path) -> None:
    """Issue 12 item 11 at the storage layer: the directory tells an empty partition from a missing one."""
    path = str(tmp_path / "dir.db")
    kv = SqliteKV(path)
    codec = GcmCodec()
    trees = EncryptedTrees(kv, max_leaf_bytes=256, max_inner_entries=4)
    directories(kv, trees, codec)
    with kv.transaction() as tx:
        for i in range(1, 6):
            trees.put(tx, codec, T1, 0, tok(i), b"k", b"v")
    assert trees.get(kv, codec, T1, 0, tok(9), b"k") is None  # never written: absent
    root = row_prefix(T1, 0, tok(3)) + ROOT_ID.to_bytes(8, "big")
    with _raw(path) as c:  # rename partition 3's root onto a token nobody has
        c.execute("UPDATE kv SET k = ? WHERE k = ?", (row_prefix(T1, 0, tok(7)) + ROOT_ID.to_bytes(8, "big"), root))
    for read in (lambda: trees.get(kv, codec, T1, 0, tok(3), b"k"), lambda: list(trees.range(kv, codec, T1, 0, tok(3))),
                 lambda: list(trees.tokens(kv, codec, T1, 0))):
        with pytest.raises(IntegrityError):
            read()
    with pytest.raises(IntegrityError), kv.transaction() as tx:  # a write does not recreate it as new either
        trees.slot(tx, codec, T1, 0, tok(3), b"k")
    with _raw(path) as c:  # deleted outright
        c.execute("DELETE FROM kv WHERE k = ?", (row_prefix(T1, 0, tok(7)) + ROOT_ID.to_bytes(8, "big"),))
    with pytest.raises(IntegrityError):
        trees.get(kv, codec, T1, 0, tok(3), b"k")
    with pytest.raises(IntegrityError):
        list(trees.tokens(kv, codec, T1, 0))
    kv.close()
