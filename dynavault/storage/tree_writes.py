"""Writes to one partition's B+tree (the format is in ``trees.py``): the write in progress (``WriteOp``), a
key's place found with one descent (``Slot``), and the surgery that keeps the trees' size invariants
(``TreeWriter``, which ``EncryptedTrees`` inherits).

A write opens and decodes the nodes it reads itself, never a reader's cached node (``node_cache.py``): the
surgery changes the nodes it holds in place, and only the nodes it changed are sealed and put back.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dynavault.errors import IntegrityError
from dynavault.storage.nodes import (
    AAD_HEAD,
    ROOT_BYTES,
    ROOT_ID,
    Inner,
    Leaf,
    LeafBytes,
    decode_node,
    inner_child,
    shortest_separator,
    split_point,
)
from dynavault.storage.sealed import NodeCodec, Sealed

if TYPE_CHECKING:
    from dynavault.storage.directory import PartitionDirectory
    from dynavault.storage.kv.base import KVReader, KVTransaction

__all__ = ["Slot", "TreeWriter", "WriteOp", "load_node"]


def load_node(r: KVReader, codec: NodeCodec, pfx: bytes, nid: int, required: bool = True) -> Leaf | Inner | None:
    """Node ``nid`` of the tree at ``pfx``, opened and decoded (a node of its own: the caller may change it).
    A missing node is an ``IntegrityError`` unless ``required`` is false (then None)."""
    rk = pfx + nid.to_bytes(8, "big")
    blob = r.get(rk)
    if blob is None:
        if required:
            raise IntegrityError("missing B+tree node")
        return None
    return decode_node(codec.open(AAD_HEAD + rk, Sealed(blob)))


class WriteOp:
    """One write: the partition, the nodes it has changed, and the rows it frees."""

    __slots__ = ("tx", "codec", "pfx", "dirty", "dead")

    def __init__(self, tx: KVTransaction, codec: NodeCodec, pfx: bytes) -> None:
        self.tx = tx
        self.codec = codec
        self.pfx = pfx
        self.dirty: dict[int, Leaf | Inner] = {}
        self.dead: set[int] = set()


class Slot:
    """One key's place in one partition tree (see ``EncryptedTrees.slot``); ``value`` is what is stored there
    now (None if absent). One ``put`` or ``delete`` may follow."""

    __slots__ = ("_trees", "_op", "_path", "_key", "_i", "value")

    def __init__(self, trees: TreeWriter, op: WriteOp, path: list | None, key: bytes) -> None:
        self._trees = trees
        self._op = op
        self._path = path
        self._key = key
        self._i = -1
        self.value: bytes | None = None
        if path is not None:
            leaf: LeafBytes = path[-1][1]
            i = leaf.find(key)
            self._i = i
            if i < leaf.n and leaf.key(i) == key:
                self.value = leaf.value(i)

    def __repr__(self) -> str:
        return f"Slot(present={self.value is not None})"

    def _take(self) -> WriteOp:
        op = self._op
        if op is None:
            raise RuntimeError("a slot is written at most once")
        self._op = None
        return op

    def put(self, value: bytes) -> None:
        if type(value) is not bytes:
            raise TypeError("value is bytes")
        op = self._take()
        if self._path is None:
            op.dirty[ROOT_ID] = Leaf([self._key], [value])
            self._trees._listed_now(op)
            self._trees._flush(op)
            return
        leaf: LeafBytes = self._path[-1][1]
        if self.value is not None:
            self._trees._write_leaf(op, self._path, leaf.replaced(self._i, value), leaf.n)
        else:
            self._trees._write_leaf(op, self._path, leaf.inserted(self._i, self._key, value), leaf.n + 1)

    def delete(self) -> None:
        """Remove the key (no write at all if it is absent)."""
        op = self._take()
        if self.value is None:
            return
        leaf: LeafBytes = self._path[-1][1]
        self._trees._write_leaf(op, self._path, leaf.deleted(self._i), leaf.n - 1)


class TreeWriter:
    """The write half of ``EncryptedTrees`` (its base class): descent for a write, splits, merges and root
    changes, and the flush of what changed. It uses the trees' size bounds and directory, set by
    ``EncryptedTrees.__init__``."""

    max_leaf_bytes: int
    min_leaf_bytes: int
    max_inner_entries: int
    min_inner_entries: int
    max_inner_bytes: int
    _keep_root: bool
    directory: PartitionDirectory | None

    def _node(self, op: WriteOp, nid: int) -> Leaf | Inner:
        node = op.dirty.get(nid)
        return node if node is not None else load_node(op.tx, op.codec, op.pfx, nid)

    def _new_id(self, op: WriteOp) -> int:
        while True:
            nid = int.from_bytes(os.urandom(8), "big")
            if nid == ROOT_ID or nid in op.dirty or nid in op.dead:
                continue
            if op.tx.get(op.pfx + nid.to_bytes(8, "big")) is None:
                return nid

    def _flush(self, op: WriteOp) -> None:
        for nid in op.dead:
            op.dirty.pop(nid, None)
            op.tx.delete(op.pfx + nid.to_bytes(8, "big"))
        for nid, node in op.dirty.items():
            rk = op.pfx + nid.to_bytes(8, "big")
            op.tx.put(rk, op.codec.seal(AAD_HEAD + rk, node.encode()))

    def _listed_now(self, op: WriteOp) -> None:
        if self.directory is not None:
            self.directory.add(op.tx, op.codec, op.pfx)


    def _descend(self, op: WriteOp, key: bytes) -> list[tuple[int, LeafBytes | Inner | bytes, int]] | None:
        """Root-to-leaf path to ``key``'s leaf, or None for a tree without a root. Inner nodes stay plaintext
        bytes until ``_fix`` needs one (a split or merge below it), and the leaf stays its plaintext with
        offsets (``LeafBytes``) until a change makes it split or merge: most writes change only the leaf."""
        pfx = op.pfx
        rk = pfx + ROOT_BYTES
        blob = op.tx.get(rk)
        if blob is None:
            return None
        pt = op.codec.open(AAD_HEAD + rk, Sealed(blob))
        nid = ROOT_ID
        path: list[tuple[int, LeafBytes | Inner | bytes, int]] = []
        while pt[:1] == b"\x01":
            i, child = inner_child(pt, key)
            path.append((nid, pt, i))
            nid = child
            rk = pfx + nid.to_bytes(8, "big")
            blob = op.tx.get(rk)
            if blob is None:
                raise IntegrityError("missing B+tree node")
            pt = op.codec.open(AAD_HEAD + rk, Sealed(blob))
        path.append((nid, LeafBytes(pt), -1))  # LeafBytes refuses anything but a well-formed leaf
        return path

    def _write_leaf(self, op: WriteOp, path: list, pt: bytes, n: int) -> None:
        """Write the plaintext ``pt`` (``n`` entries) of the path's leaf after a one-entry change. A leaf that
        stays within its size bounds (a root leaf: not empty and not over) is sealed and written as is, which is
        all ``_fix`` would do with it; otherwise it is decoded and ``_fix`` splits or merges it."""
        size = len(pt)
        fits = n == 1 or size <= self.max_leaf_bytes
        if fits and (n >= 1 if len(path) == 1 else size >= self.min_leaf_bytes):
            rk = op.pfx + path[-1][0].to_bytes(8, "big")
            op.tx.put(rk, op.codec.seal(AAD_HEAD + rk, pt))
            return
        path[-1] = (path[-1][0], decode_node(pt), -1)
        self._fix(op, path)

    def _overflow(self, node: Leaf | Inner) -> bool:
        if type(node) is Leaf:
            return len(node.keys) > 1 and node.size() > self.max_leaf_bytes
        return len(node.kids) > 1 and (
            len(node.kids) > self.max_inner_entries or node.size() > self.max_inner_bytes
        )

    def _underflow(self, node: Leaf | Inner) -> bool:
        if type(node) is Leaf:
            return node.size() < self.min_leaf_bytes
        n = len(node.kids)
        return n < 2 or (n < self.min_inner_entries and node.size() < self.max_inner_bytes // 4)

    def _fits(self, node: Leaf | Inner) -> bool:
        return not self._overflow(node)

    def _split(self, node: Leaf | Inner) -> tuple[list[Leaf | Inner], list[bytes]]:
        """Split an overfull node into parts that fit, plus the separators between them."""
        if not self._overflow(node):
            return [node], []
        if type(node) is Leaf:
            m = split_point([8 + len(k) + len(v) for k, v in zip(node.keys, node.vals, strict=True)])
            left = Leaf(node.keys[:m], node.vals[:m])
            right = Leaf(node.keys[m:], node.vals[m:])
            sep = shortest_separator(left.keys[-1], right.keys[0])
        else:
            m = split_point([12 + len(k) for k in node.keys] + [8])
            left = Inner(node.keys[: m - 1], node.kids[:m])
            sep = node.keys[m - 1]
            right = Inner(node.keys[m:], node.kids[m:])
        lparts, lseps = self._split(left)
        rparts, rseps = self._split(right)
        return lparts + rparts, lseps + [sep] + rseps

    def _fix(self, op: WriteOp, path: list[tuple[int, Leaf | Inner, int]]) -> None:
        """Restore the size invariants bottom-up from a modified leaf, then write what changed."""
        level = len(path) - 1
        nid, node, _ = path[level]
        op.dirty[nid] = node
        while level > 0:
            # each size test once (a leaf's size sums all of its entries)
            over = self._overflow(node)
            if not over and not self._underflow(node):
                break  # the parent is unchanged, so nothing above it changes either
            pnid, parent, ci = path[level - 1]
            if type(parent) is bytes:
                parent = decode_node(parent)
                path[level - 1] = (pnid, parent, ci)
            if over:
                parts, seps = self._split(node)
                ids = [nid] + [self._new_id(op) for _ in parts[1:]]
                for pid, part in zip(ids, parts, strict=True):
                    op.dirty[pid] = part
                parent.kids[ci : ci + 1] = ids
                parent.keys[ci:ci] = seps
            elif len(parent.kids) > 1:
                self._rebalance(op, parent, ci)
            else:
                break
            op.dirty[pnid] = parent
            level -= 1
            nid, node = pnid, parent
        else:
            self._fix_root(op)
        self._flush(op)

    def _fix_root(self, op: WriteOp) -> None:
        root = op.dirty[ROOT_ID]
        if type(root) is Leaf and not root.keys:
            if self._keep_root:
                return  # a directory stays, empty
            op.dead.add(ROOT_ID)  # an empty partition leaves no rows...
            self.directory.remove(op.tx, op.codec, op.pfx)  # ...and no directory entry
            return
        # Grow: the root id is fixed, so its contents move down into fresh nodes.
        while self._overflow(root):
            parts, seps = self._split(root)
            ids = [self._new_id(op) for _ in parts]
            for pid, part in zip(ids, parts, strict=True):
                op.dirty[pid] = part
            root = Inner(seps, ids)
        # Shrink: a root with a single child takes over that child's contents.
        while type(root) is Inner and len(root.kids) == 1:
            child_id = root.kids[0]
            root = self._node(op, child_id)
            op.dirty.pop(child_id, None)
            op.dead.add(child_id)
        op.dirty[ROOT_ID] = root

    def _rebalance(self, op: WriteOp, parent: Inner, ci: int) -> None:
        """Merge child ``ci`` with a neighbour, or even out the two if together they are too big."""
        li = ci - 1 if ci > 0 else 0
        ri = li + 1
        lid, rid = parent.kids[li], parent.kids[ri]
        left, right = self._node(op, lid), self._node(op, rid)
        if type(left) is Leaf:
            merged: Leaf | Inner = Leaf(left.keys + right.keys, left.vals + right.vals)
        else:
            merged = Inner(left.keys + [parent.keys[li]] + right.keys, left.kids + right.kids)
        if self._fits(merged):
            op.dirty[lid] = merged
            op.dirty.pop(rid, None)
            op.dead.add(rid)
            del parent.kids[ri]
            del parent.keys[li]
            return
        if type(merged) is Leaf:
            m = split_point([8 + len(k) + len(v) for k, v in zip(merged.keys, merged.vals, strict=True)])
            op.dirty[lid] = Leaf(merged.keys[:m], merged.vals[:m])
            op.dirty[rid] = Leaf(merged.keys[m:], merged.vals[m:])
            parent.keys[li] = shortest_separator(merged.keys[m - 1], merged.keys[m])
        else:
            m = split_point([12 + len(k) for k in merged.keys] + [8])
            op.dirty[lid] = Inner(merged.keys[: m - 1], merged.kids[:m])
            op.dirty[rid] = Inner(merged.keys[m:], merged.kids[m:])
            parent.keys[li] = merged.keys[m - 1]
