"""A write's one-entry change is spliced into the leaf's plaintext (``nodes.LeafBytes``) instead of decoding the
leaf into lists and encoding it again. The splice must give exactly the slow path's bytes: per leaf, and per tree
(the same leaves stored after every write as a tree that always decodes and runs ``_fix``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynavault.errors import IntegrityError
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.nodes import AAD_HEAD, Leaf, LeafBytes, decode_node
from dynavault.storage.sealed import PartitionToken, Sealed
from dynavault.storage.trees import EncryptedTrees, row_prefix
from tests.storage.test_trees import GcmCodec

T = b"\x33" * 16
TOKEN = PartitionToken(b"\x07" * 32)

_keys = st.lists(st.binary(min_size=0, max_size=12), unique=True, max_size=12).map(sorted)


@settings(max_examples=400, deadline=None)
@given(keys=_keys, data=st.data())
def test_splice_gives_the_slow_paths_bytes(keys: list[bytes], data) -> None:
    vals = [data.draw(st.binary(max_size=40)) for _ in keys]
    pt = Leaf(list(keys), list(vals)).encode()
    raw = LeafBytes(pt)
    key = data.draw(st.sampled_from(keys) if keys and data.draw(st.booleans()) else st.binary(max_size=12))
    value = data.draw(st.binary(max_size=60))
    i = raw.find(key)
    ks, vs = list(keys), list(vals)
    if i < len(ks) and ks[i] == key:
        assert raw.key(i) == key and raw.value(i) == vals[i]
        vs[i] = value
        assert raw.replaced(i, value) == Leaf(ks, vs).encode()
        ks2, vs2 = list(keys), list(vals)
        del ks2[i], vs2[i]
        assert raw.deleted(i) == Leaf(ks2, vs2).encode()
    else:
        assert key not in keys
        ks.insert(i, key)
        vs.insert(i, value)
        assert raw.inserted(i, key, value) == Leaf(ks, vs).encode()


@pytest.mark.parametrize("bad", [b"", b"\x00", b"\x01\x00\x00\x00\x00", b"\x00\x01\x00\x00\x00",
                                 Leaf([b"k"], [b"v"]).encode() + b"x", Leaf([b"k"], [b"v"]).encode()[:-1]])
def test_a_malformed_leaf_is_an_integrity_error(bad: bytes) -> None:
    with pytest.raises(IntegrityError):
        LeafBytes(bad)


class _SlowTrees(EncryptedTrees):
    """The reference: every leaf change decoded into lists and put through ``_fix``."""

    def _write_leaf(self, op, path, pt, n) -> None:
        path[-1] = (path[-1][0], decode_node(pt), -1)
        self._fix(op, path)


def _leaves(kv: SqliteKV, codec: GcmCodec) -> list[bytes]:
    out = []
    for rk, blob in kv.range(row_prefix(T, 0, TOKEN), row_prefix(T, 0, TOKEN) + b"\xff" * 9):
        pt = codec.open(AAD_HEAD + rk, Sealed(blob))
        if pt[:1] == b"\x00":
            out.append(pt)
    return sorted(out)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 40), st.integers(0, 90)), min_size=1, max_size=120))
def test_a_tree_stores_the_same_leaves_as_the_slow_path(tmp_path_factory, ops) -> None:
    d = tmp_path_factory.mktemp("splice")
    stores = []
    for name, cls in (("fast", EncryptedTrees), ("slow", _SlowTrees)):
        kv = SqliteKV(str(d / f"{name}.db"), synchronous="NORMAL")
        trees = cls(kv, max_leaf_bytes=256, max_inner_entries=4)
        codec = GcmCodec()
        with kv.transaction() as tx:
            trees.create_directory(tx, codec, T, 0)
        stores.append((kv, trees, codec))
    model: dict[bytes, bytes] = {}
    try:
        for put, k, size in ops:
            key = b"k%03d" % k
            value = bytes([k]) * size
            for kv, trees, codec in stores:
                with kv.transaction() as tx:
                    if put:
                        trees.put(tx, codec, T, 0, TOKEN, key, value)
                    else:
                        trees.delete(tx, codec, T, 0, TOKEN, key)
            if put:
                model[key] = value
            else:
                model.pop(key, None)
            (fkv, ftrees, fcodec), (skv, _, scodec) = stores
            assert _leaves(fkv, fcodec) == _leaves(skv, scodec)
        got = dict(ftrees.range(fkv, fcodec, T, 0, TOKEN)) if model else {}
        assert got == model
        if model:
            assert ftrees.check_partition(fkv, fcodec, T, 0, TOKEN)[0] == len(model)
    finally:
        for kv, _, _ in stores:
            kv.close()
