"""An encrypted B+tree per item collection (partition), stored as sealed nodes in a key-value store.

Rows are keyed ``b"T" ‖ table id (16) ‖ index id (u32 BE) ‖ token (32) ‖ node id (u64 BE)``; every other
first byte of the key space belongs to other users of the same store (the catalog). The value of a row is
``codec.seal(aad, node_plaintext)`` with ``aad = FORMAT_VERSION ‖ row key``, so a blob copied to another
table, index, partition or node position fails to open (``IntegrityError``), and a missing child node is an
integrity error too. A partition whose root row vanished or was renamed is told from an empty one by the
partition directory (``directory.py``): a sealed list of each (table, index)'s partition tokens, changed in
the same transaction as a partition's first or last item. (Rolling a node back to an older version of itself
at the same position is not detectable at this layer.)

Shape: the root has the fixed node id 0, so a point lookup in a one-leaf partition (most partitions) is one
KV get and one open, and a write is one get, one open, one seal, one put. Other nodes have random 64-bit
ids (no counter row to contend on). Leaves split and merge by encoded size (``max_leaf_bytes``; a single
entry larger than that simply lives alone in its leaf); inner nodes split by entry count
(``max_inner_entries``) or size, and carry shortest separators (suffix truncation) so they stay small. An
empty partition leaves no rows. There are no sibling links: a range walks down from the root with a stack,
so a split or merge rewrites only the nodes it touches.

Node plaintext (compact, little-endian, length-prefixed):
    leaf:  00 ‖ n:u32 ‖ (klen:u32, vlen:u32) × n ‖ (key ‖ value) × n
    inner: 01 ‖ n:u32 ‖ child:u64 × n ‖ klen:u32 × (n-1) ‖ key × (n-1)
An inner node's child i holds keys k with keys[i-1] <= k < keys[i].

Iterators are lazy and load a node when they reach it: finish (or materialize) a range before writing to
the same partition. This module holds the reads, the partition listing and the offline checks; the write half
(a write's descent, splits, merges, root changes) is ``tree_writes.py``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator

from dynavault.errors import IntegrityError
from dynavault.storage.directory import DIR_LEAF_BYTES, PartitionDirectory
from dynavault.storage.kv.base import KVReader, KVStore, KVTransaction, delete_prefix, prefix_end
from dynavault.storage.node_cache import NodeCache
from dynavault.storage.nodes import (
    AAD_HEAD,
    FORMAT_VERSION,
    ROOT_BYTES,
    ROOT_ID,
    ROW_PREFIX,
    Inner,
    Leaf,
    decode_node,
    inner_child,
    leaf_lookup,
    row_prefix,
    segment_bounds,
    token_leaf_has,
)
from dynavault.storage.sealed import TOKEN_SIZE, NodeCodec, PartitionToken, Sealed
from dynavault.storage.tree_writes import Slot, TreeWriter, WriteOp, load_node

__all__ = ["EncryptedTrees", "ROW_PREFIX", "FORMAT_VERSION", "ROOT_ID", "Slot", "row_prefix", "segment_bounds"]

#: A range (Query, Scan) fetches up to this many of a partition's rows in one range statement (the root sorts
#: first, id 0): a partition of one leaf, or a root over a few leaves (1 KB items, 16 KiB leaves: ~40 items),
#: is then one statement instead of one per node, and only the nodes the walk reaches are opened. Bigger
#: partitions read the rest one get per node. (A point lookup reads one node per get: for a partition of one
#: leaf that is one statement already, and it does not copy leaves it does not need.)
PREFETCH_NODES = 4


def _opened(cache: NodeCache, codec: NodeCodec, rk: bytes, blob: bytes, point: bool = False) -> Leaf | Inner | bytes:
    """The node sealed in ``blob`` at row ``rk``: from the cache while the blob is the one it was opened from.
    ``point`` (a point lookup): a non-root leaf missed for the first time lately is not decoded nor kept (the
    cache's ``admit``); its plaintext is returned, for ``leaf_lookup``."""
    node = cache.get(rk, blob)
    if node is None:
        pt = codec.open(AAD_HEAD + rk, Sealed(blob))
        if point and pt[:1] == b"\x00" and not rk.endswith(ROOT_BYTES) and not cache.admit(rk):
            return pt
        node = decode_node(pt)
        # Shared by every later reader (of any thread): tuples, so code that changed a node in place would fail
        # there instead of changing what the others are handed. Writers open nodes of their own.
        if type(node) is Leaf:
            node = Leaf(tuple(node.keys), tuple(node.vals))
            cache.put(rk, blob, node)
        else:
            node = Inner(tuple(node.keys), tuple(node.kids))
            cache.put(rk, blob, node, shape=True)
    return node


def _in_leaf(leaf: Leaf, key: bytes) -> bytes | None:
    """The value at ``key`` in an opened leaf, or None."""
    keys = leaf.keys
    i = bisect_left(keys, key)
    return leaf.vals[i] if i < len(keys) and keys[i] == key else None


class EncryptedTrees(TreeWriter):
    """B+trees of sealed nodes, one per (table id, index id, partition token)."""

    def __init__(self, kv: KVStore, *, max_leaf_bytes: int = 16384, max_inner_entries: int = 256,
                 node_cache: NodeCache | None = None, _directory: bool = False) -> None:
        """``node_cache``: opened nodes the reads (``get``, ``range``) reuse while their sealed blob is
        unchanged (``node_cache.py``); writes always open and decode their own."""
        if max_leaf_bytes < 64:
            raise ValueError("max_leaf_bytes must be at least 64")
        if max_inner_entries < 4:
            raise ValueError("max_inner_entries must be at least 4")
        self.kv = kv
        self.max_leaf_bytes = max_leaf_bytes
        self.min_leaf_bytes = max_leaf_bytes // 4
        self.max_inner_entries = max_inner_entries
        self.min_inner_entries = max(2, max_inner_entries // 3)
        self.max_inner_bytes = max(max_leaf_bytes, 1024)
        self.node_cache = node_cache
        # A directory tree keeps its root even when empty (a missing root is then always an integrity
        # error); the partition trees have a directory of their own.
        self._keep_root = _directory
        self.directory: PartitionDirectory | None = None if _directory else PartitionDirectory(
            EncryptedTrees(kv, max_leaf_bytes=DIR_LEAF_BYTES, max_inner_entries=256, _directory=True))

    def __repr__(self) -> str:
        return f"EncryptedTrees({self.kv!r})"

    # -- rows and blobs ------------------------------------------------------------------------
    @staticmethod
    def _pfx(table_id: bytes, index_id: int, token: PartitionToken) -> bytes:
        if type(token) is not PartitionToken:
            raise TypeError(f"partition tokens are PartitionToken, not {type(token).__name__}")
        if type(table_id) is not bytes or len(table_id) != 16:
            raise TypeError("table_id must be 16 bytes (UUID bytes)")
        if type(index_id) is not int or not 0 <= index_id < 2**32:
            raise TypeError("index_id must be an int in [0, 2**32)")
        return ROW_PREFIX + table_id + index_id.to_bytes(4, "big") + token.raw


    # -- reads ---------------------------------------------------------------------------------
    def get(
        self, tx: KVReader, codec: NodeCodec, table_id: bytes, index_id: int, token: PartitionToken, key: bytes
    ) -> bytes | None:
        pfx = self._pfx(table_id, index_id, token)
        found, value = self._lookup(tx, codec, pfx, key)
        if not found:
            self._absent(tx, codec, pfx)  # an empty partition, unless the directory lists it
        return value

    def get_in_one_read(self, r: KVReader, codec: NodeCodec, table_id: bytes, index_id: int, token: PartitionToken,
                        key: bytes) -> tuple[bool, bytes | None]:
        """``(True, value)`` when single statements answer, each consistent by itself, so ``r`` need not be a
        snapshot (which would cost a BEGIN and a COMMIT around the reads): a partition whose root is a leaf, or a
        root over leaves, read with the leaf it names for ``key`` in one statement. The root comes from the node
        cache's hint (the root last opened there), or, for a partition not seen lately, from a read of the root
        alone first (the leaf to read is the root's to say). ``(False, None)`` otherwise (no root, a deeper tree,
        a root that changed to route ``key`` elsewhere): ask ``get`` in a snapshot."""
        cache = self.node_cache
        if cache is None:
            return False, None
        pfx = self._pfx(table_id, index_id, token)
        rk = pfx + ROOT_BYTES
        hint = cache.peek(rk)
        if hint is None and cache.seen_empty(rk):
            return False, None  # empty when last read: the snapshot's read tells it from a vanished one
        if type(hint) is not Inner:  # not seen lately, or a root leaf: the root alone
            blob = r.get(rk)
            if blob is None:
                if hint is None:
                    cache.note_empty(rk)
                return False, None  # gone or empty: whether it may be is the directory's to say, in a snapshot
            hint = _opened(cache, codec, rk, blob)
            if type(hint) is Leaf:
                return True, _in_leaf(hint, key)
        want = pfx + hint.kids[bisect_right(hint.keys, key)].to_bytes(8, "big")
        root_blob, blob = r.get_pair(rk, want)
        if root_blob is None:
            return False, None
        node = _opened(cache, codec, rk, root_blob)
        if type(node) is Leaf:  # shrunk back to one leaf since the hint
            return True, _in_leaf(node, key)
        if pfx + node.kids[bisect_right(node.keys, key)].to_bytes(8, "big") != want:
            return False, None  # the root now routes the key elsewhere
        if blob is None:
            raise IntegrityError("missing B+tree node")  # named by the root read in the same statement
        node = _opened(cache, codec, want, blob, point=True)
        if type(node) is bytes:
            return True, leaf_lookup(node, key)
        if type(node) is not Leaf:
            return False, None  # grown a level: node by node, in a snapshot
        return True, _in_leaf(node, key)

    def _lookup(self, tx: KVReader, codec: NodeCodec, pfx: bytes, key: bytes) -> tuple[bool, bytes | None]:
        """(root found, value) for ``key`` in the tree at ``pfx``."""
        cache = self.node_cache
        got: dict[bytes, bytes] | None = None
        if cache is not None:
            hint = cache.peek(pfx + ROOT_BYTES)
            if type(hint) is Inner and len(hint.kids) < PREFETCH_NODES:
                # Last seen as a root over a few leaves: all its rows in one statement, not one per level.
                got = dict(tx.range(pfx, prefix_end(pfx), limit=PREFETCH_NODES))
                if len(got) >= PREFETCH_NODES:
                    got = None  # grown since: node by node
        nid = ROOT_ID
        while True:
            rk = pfx + nid.to_bytes(8, "big")
            blob = tx.get(rk) if got is None else got.get(rk)
            if blob is None:
                if nid == ROOT_ID:
                    return False, None
                raise IntegrityError("missing B+tree node")
            if cache is not None:
                # opened once, then searched in the decoded node for as long as the blob stays the same
                node = _opened(cache, codec, rk, blob, point=True)
                if type(node) is bytes:
                    return True, leaf_lookup(node, key)
                if type(node) is Leaf:
                    return True, _in_leaf(node, key)
                nid = node.kids[bisect_right(node.keys, key)]
                continue
            pt = codec.open(AAD_HEAD + rk, Sealed(blob))
            if pt[:1] == b"\x00":
                if self._keep_root:
                    has = token_leaf_has(pt, key)
                    if has is not None:
                        return True, b"" if has else None
                return True, leaf_lookup(pt, key)
            nid = inner_child(pt, key)[1]

    def _absent(self, tx: KVReader, codec: NodeCodec, pfx: bytes) -> None:
        """A partition root is not in the store: fine if the directory does not list the partition, an
        integrity error (it vanished or was renamed) if it does."""
        if self._keep_root:
            raise IntegrityError("partition directory missing")
        if self.directory.listed(tx, codec, pfx):
            raise IntegrityError("partition listed in the directory is missing from the store")

    @staticmethod
    def _root_exists(r: KVReader, pfx: bytes) -> bool:
        return r.get(pfx + ROOT_BYTES) is not None

    @staticmethod
    def _put_empty_root(tx: KVTransaction, codec: NodeCodec, pfx: bytes) -> None:
        rk = pfx + ROOT_BYTES
        tx.put(rk, codec.seal(AAD_HEAD + rk, Leaf([], []).encode()))

    def _slot_at(self, tx: KVTransaction, codec: NodeCodec, pfx: bytes, key: bytes) -> Slot | None:
        """A slot in the tree at a raw prefix (the directory's own trees); None if it has no root."""
        op = WriteOp(tx, codec, pfx)
        path = self._descend(op, key)
        return None if path is None else Slot(self, op, path, key)

    def range(
        self,
        tx: KVReader,
        codec: NodeCodec,
        table_id: bytes,
        index_id: int,
        token: PartitionToken,
        *,
        lo: bytes | None = None,
        lo_inclusive: bool = True,
        hi: bytes | None = None,
        hi_inclusive: bool = True,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs of one partition between the bounds, in key order (or reversed)."""
        pfx = self._pfx(table_id, index_id, token)
        return self._range(tx, codec, pfx, lo, lo_inclusive, hi, hi_inclusive, reverse)

    def _range(self, tx, codec, pfx, lo, lo_inc, hi, hi_inc, reverse) -> Iterator[tuple[bytes, bytes]]:
        # (a directory is big and wide and walked in part: read node by node)
        got = {} if self._keep_root else dict(tx.range(pfx, prefix_end(pfx), limit=PREFETCH_NODES))
        whole = not self._keep_root and len(got) < PREFETCH_NODES  # every row of the partition is in ``got``
        cache = self.node_cache

        def load(nid: int) -> Leaf | Inner | None:
            rk = pfx + nid.to_bytes(8, "big")
            blob = got.pop(rk, None)  # each node is reached once: no need to keep its blob
            if blob is None and not whole:
                blob = tx.get(rk)
            if blob is None:
                if nid == ROOT_ID:
                    return None
                raise IntegrityError("missing B+tree node")
            if cache is None:
                return decode_node(codec.open(AAD_HEAD + rk, Sealed(blob)))
            return _opened(cache, codec, rk, blob)

        root = load(ROOT_ID)
        if root is None:
            self._absent(tx, codec, pfx)
            return
        if lo is not None and hi is not None and (lo > hi or (lo == hi and not (lo_inc and hi_inc))):
            return
        # Depth-first with an explicit stack of nodes or not-yet-loaded child ids, so each node is
        # fetched and opened only when the walk reaches it.
        stack: list[Leaf | Inner | int] = [root]
        while stack:
            node = stack.pop()
            if type(node) is int:
                node = load(node)
            keys = node.keys
            if type(node) is Leaf:
                s = 0 if lo is None else (bisect_left(keys, lo) if lo_inc else bisect_right(keys, lo))
                e = len(keys) if hi is None else (bisect_right(keys, hi) if hi_inc else bisect_left(keys, hi))
                vals = node.vals
                for i in range(e - 1, s - 1, -1) if reverse else range(s, e):
                    yield keys[i], vals[i]
                continue
            cs = 0 if lo is None else bisect_right(keys, lo)
            ce = len(node.kids) - 1 if hi is None else bisect_right(keys, hi)
            kids = node.kids[cs : ce + 1]
            stack.extend(kids if reverse else reversed(kids))

    def tokens(
        self,
        tx: KVReader,
        codec: NodeCodec,
        table_id: bytes,
        index_id: int,
        *,
        after: PartitionToken | None = None,
        token_lo: bytes = b"",
        token_hi: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[PartitionToken]:
        """Non-empty partitions in token order with ``token_lo <= token < token_hi``, strictly after
        (before, when reversed) ``after``: Scan pages resume with ``after``, segments use the bounds.

        The store's partitions are walked in step with the partition directory: a partition one lists and
        the other does not (vanished, renamed, planted) is an ``IntegrityError``, never a short answer."""
        base = row_prefix(table_id, index_id)
        lo = base + token_lo
        hi = base + token_hi if token_hi is not None else prefix_end(base)
        d_lo: bytes | None = token_lo or None
        d_lo_inc = True
        d_hi = token_hi
        if after is not None:
            if type(after) is not PartitionToken:
                raise TypeError("after must be a PartitionToken")
            if reverse:
                hi = min(hi, base + after.raw) if hi is not None else base + after.raw
                d_hi = after.raw if d_hi is None else min(d_hi, after.raw)
            else:
                lo = max(lo, base + after.raw + b"\xff" * 9)
                if d_lo is None or after.raw >= d_lo:
                    d_lo, d_lo_inc = after.raw, False
        stored = self._tokens(tx, base, lo, hi, reverse)
        listed = self.directory.tokens(tx, codec, table_id, index_id, lo=d_lo, lo_inclusive=d_lo_inc, hi=d_hi,
                                       reverse=reverse)
        return self._in_step(stored, listed)

    @staticmethod
    def _in_step(stored: Iterator[PartitionToken], listed: Iterator[bytes]) -> Iterator[PartitionToken]:
        for token in stored:
            if next(listed, None) != token.raw:
                raise IntegrityError("the partition directory and the store's partitions differ")
            yield token
        if next(listed, None) is not None:
            raise IntegrityError("partition listed in the directory is missing from the store")

    @staticmethod
    def _tokens(tx: KVReader, base: bytes, lo: bytes, hi: bytes | None, reverse: bool) -> Iterator[PartitionToken]:
        n = len(base)
        while hi is None or lo < hi:
            last = None
            reseek = False
            for k, _ in tx.range(lo, hi, reverse=reverse):
                raw = k[n : n + TOKEN_SIZE]
                if raw == last:
                    # A big partition: skip the rest of its rows with one seek instead of reading them.
                    reseek = True
                    break
                last = raw
                yield PartitionToken(raw)
            if not reseek:
                return
            if reverse:
                hi = base + last
            else:
                lo = base + last + b"\xff" * 9

    # -- offline checks (`dynavault verify`) ----------------------------------------------------
    def check_partition(
        self, r: KVReader, codec: NodeCodec, table_id: bytes, index_id: int, token: PartitionToken
    ) -> tuple[int, set[int]]:
        """Open every node of one partition and check the tree's shape: -> (entries, node ids reached).
        Raises ``IntegrityError`` naming the first problem."""
        count, seen, _ = self._check_tree(r, codec, self._pfx(table_id, index_id, token), False)
        return count, seen

    def check_directory(self, r: KVReader, codec: NodeCodec, table_id: bytes, index_id: int
                        ) -> tuple[list[bytes], set[int]]:
        """Every token the partition directory lists, in order, and the directory node ids reached."""
        from dynavault.storage.directory import directory_prefix

        _, seen, keys = self.directory._t._check_tree(r, codec, directory_prefix(table_id, index_id), True)
        return keys, seen

    def _check_tree(self, r: KVReader, codec: NodeCodec, pfx: bytes, keep_keys: bool
                    ) -> tuple[int, set[int], list[bytes]]:
        seen: set[int] = set()
        keys_out: list[bytes] = []
        count = 0
        leaf_depth: int | None = None
        stack: list[tuple[int, bytes | None, bytes | None, int]] = [(ROOT_ID, None, None, 0)]
        while stack:
            nid, lo, hi, depth = stack.pop()
            if nid in seen:
                raise IntegrityError("a B+tree node is linked twice")
            seen.add(nid)
            node = load_node(r, codec, pfx, nid)
            ks = node.keys
            if any(a >= b for a, b in zip(ks, ks[1:], strict=False)):
                raise IntegrityError("B+tree keys out of order")
            if ks and ((lo is not None and ks[0] < lo) or (hi is not None and ks[-1] >= hi)):
                raise IntegrityError("a B+tree key outside its parent's range")
            if type(node) is Leaf:
                if leaf_depth is None:
                    leaf_depth = depth
                elif depth != leaf_depth:
                    raise IntegrityError("B+tree leaves at different depths")
                count += len(ks)
                if keep_keys:
                    keys_out.extend(ks)
                continue
            bounds = [lo, *ks, hi]
            for i in range(len(node.kids) - 1, -1, -1):  # pushed in reverse: popped in key order
                stack.append((node.kids[i], bounds[i], bounds[i + 1], depth + 1))
        return count, seen, keys_out

    # -- writes --------------------------------------------------------------------------------
    def create_directory(self, tx: KVTransaction, codec: NodeCodec, table_id: bytes, index_id: int) -> None:
        """Make the empty partition directory of a new table or index (in the transaction that creates it).

        Every (table, index) that holds partitions needs one: without it writes and reads of new
        partitions fail with ``IntegrityError``."""
        self.directory.create(tx, codec, table_id, index_id)

    def slot(
        self, tx: KVTransaction, codec: NodeCodec, table_id: bytes, index_id: int, token: PartitionToken, key: bytes
    ) -> Slot:
        """Find ``key``'s place with one descent: read its value, then write or delete it once.

        A read-check-write (a conditional put) costs one descent instead of two. The slot is valid until
        the first other write to the same partition tree in ``tx``."""
        if type(key) is not bytes:
            raise TypeError("key is bytes")
        op = WriteOp(tx, codec, self._pfx(table_id, index_id, token))
        path = self._descend(op, key)
        if path is None:
            # a new partition, unless it vanished: never answer "absent" for a missing partition
            self._absent(tx, codec, op.pfx)
        return Slot(self, op, path, key)

    def put(
        self,
        tx: KVTransaction,
        codec: NodeCodec,
        table_id: bytes,
        index_id: int,
        token: PartitionToken,
        key: bytes,
        value: bytes,
    ) -> bytes | None:
        """Insert or replace; returns the previous value (None if the key was absent)."""
        place = self.slot(tx, codec, table_id, index_id, token, key)
        place.put(value)
        return place.value

    def delete(
        self, tx: KVTransaction, codec: NodeCodec, table_id: bytes, index_id: int, token: PartitionToken, key: bytes
    ) -> bytes | None:
        """Remove ``key``; returns its value (None, and no write at all, if it was absent)."""
        place = self.slot(tx, codec, table_id, index_id, token, key)
        place.delete()
        return place.value

    def drop(self, tx: KVTransaction, table_id: bytes, index_id: int | None = None) -> None:
        """Delete every row of a table (or of one of its indexes), its partition directories included."""
        PartitionDirectory.drop(tx, table_id, index_id)
        delete_prefix(tx, row_prefix(table_id, index_id))
