"""B+tree nodes as stored: their plaintext encoding, the row keys that address them, and the few
node-level searches that run on the plaintext without building the node (see ``trees.py`` for the format).
"""

from __future__ import annotations

import struct
from itertools import accumulate, chain

from dynavault.errors import IntegrityError
from dynavault.storage.sealed import TOKEN_SIZE, PartitionToken

ROW_PREFIX = b"T"
FORMAT_VERSION = 1
ROOT_ID = 0
ROOT_BYTES = ROOT_ID.to_bytes(8, "big")
AAD_HEAD = bytes((FORMAT_VERSION,))
NODE_HEADER = struct.Struct("<BI")
KIND_LEAF = 0
KIND_INNER = 1
PREFIX_LEN = 1 + 16 + 4
PART_LEN = PREFIX_LEN + TOKEN_SIZE


class Leaf:
    __slots__ = ("keys", "vals")

    def __init__(self, keys: list[bytes], vals: list[bytes]) -> None:
        self.keys = keys
        self.vals = vals

    def size(self) -> int:
        return 5 + 8 * len(self.keys) + sum(map(len, self.keys)) + sum(map(len, self.vals))

    def encode(self) -> bytes:
        keys, vals = self.keys, self.vals
        n = len(keys)
        pairs = list(chain.from_iterable(zip(keys, vals, strict=True)))
        return struct.pack(f"<BI{2 * n}I", KIND_LEAF, n, *map(len, pairs)) + b"".join(pairs)

    def __repr__(self) -> str:  # never the contents: they are plaintext user data
        return f"<leaf {len(self.keys)} entries>"


class Inner:
    __slots__ = ("keys", "kids")

    def __init__(self, keys: list[bytes], kids: list[int]) -> None:
        self.keys = keys
        self.kids = kids

    def size(self) -> int:
        return 5 + 8 * len(self.kids) + 4 * len(self.keys) + sum(map(len, self.keys))

    def encode(self) -> bytes:
        n = len(self.kids)
        return struct.pack(
            f"<BI{n}Q{n - 1}I", KIND_INNER, n, *self.kids, *map(len, self.keys)
        ) + b"".join(self.keys)

    def __repr__(self) -> str:
        return f"<inner {len(self.kids)} children>"


def decode_node(pt: bytes) -> Leaf | Inner:
    try:
        kind, n = NODE_HEADER.unpack_from(pt, 0)
        if kind == KIND_LEAF:
            lens = struct.unpack_from(f"<{2 * n}I", pt, 5)
            pos = 5 + 8 * n
            keys: list[bytes] = []
            vals: list[bytes] = []
            for i in range(n):
                kl = lens[2 * i]
                vl = lens[2 * i + 1]
                e = pos + kl
                keys.append(pt[pos:e])
                pos = e + vl
                vals.append(pt[e:pos])
            if pos != len(pt):
                raise ValueError
            return Leaf(keys, vals)
        if kind == KIND_INNER and n >= 1:
            kids = list(struct.unpack_from(f"<{n}Q", pt, 5))
            pos = 5 + 8 * n
            lens = struct.unpack_from(f"<{n - 1}I", pt, pos)
            pos += 4 * (n - 1)
            ks = []
            for kl in lens:
                ks.append(pt[pos : pos + kl])
                pos += kl
            if pos != len(pt):
                raise ValueError
            return Inner(ks, kids)
    except (struct.error, ValueError):
        pass
    # Only reachable if an authenticated blob holds garbage: still never data.
    raise IntegrityError("malformed B+tree node")


def leaf_lookup(pt: bytes, key: bytes) -> bytes | None:
    """Point lookup straight in a leaf's plaintext: a binary search that slices only the keys it compares
    and the value asked for (the offsets come from the length table in one pass in C)."""
    try:
        n = NODE_HEADER.unpack_from(pt, 0)[1]
        # offs[2i] .. offs[2i+1] is key i, offs[2i+1] .. offs[2i+2] its value
        offs = list(accumulate(struct.unpack_from(f"<{2 * n}I", pt, 5), initial=5 + 8 * n))
        if offs[-1] != len(pt):
            raise ValueError
    except (struct.error, ValueError):
        raise IntegrityError("malformed B+tree node") from None
    lo, hi = 0, n
    while lo < hi:  # bisect_left over the keys
        mid = (lo + hi) // 2
        if pt[offs[2 * mid] : offs[2 * mid + 1]] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and pt[offs[2 * lo] : offs[2 * lo + 1]] == key:
        return pt[offs[2 * lo + 1] : offs[2 * lo + 2]]
    return None


def inner_child(pt: bytes, key: bytes) -> tuple[int, int]:
    """(position, node id) of the child of an inner node's plaintext that holds ``key``: a binary search
    over the separators without building the node (a directory root has up to max_inner_entries children)."""
    try:
        n = NODE_HEADER.unpack_from(pt, 0)[1]
        if pt[:1] != b"\x01" or n < 1:
            raise ValueError
        pos = 5 + 8 * n
        offs = list(accumulate(struct.unpack_from(f"<{n - 1}I", pt, pos), initial=pos + 4 * (n - 1)))
        if offs[-1] != len(pt):
            raise ValueError
    except (struct.error, ValueError):
        raise IntegrityError("malformed B+tree node") from None
    lo, hi = 0, n - 1
    while lo < hi:  # bisect_right: the first separator greater than key
        mid = (lo + hi) // 2
        if key < pt[offs[mid] : offs[mid + 1]]:
            hi = mid
        else:
            lo = mid + 1
    return lo, struct.unpack_from("<Q", pt, 5 + 8 * lo)[0]


_TOKEN_LENS = struct.pack("<II", TOKEN_SIZE, 0)


def token_leaf_has(pt: bytes, key: bytes) -> bool | None:
    """Membership in a directory leaf (32-byte tokens, empty values) by binary search over the plaintext,
    without building lists: a GetItem miss pays this on top of its own lookup. None: not that shape."""
    n = NODE_HEADER.unpack_from(pt, 0)[1]
    body = 5 + 8 * n
    if len(pt) != body + TOKEN_SIZE * n or pt[5:body] != _TOKEN_LENS * n:
        return None
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        at = body + TOKEN_SIZE * mid
        if pt[at : at + TOKEN_SIZE] < key:
            lo = mid + 1
        else:
            hi = mid
    at = body + TOKEN_SIZE * lo
    return lo < n and pt[at : at + TOKEN_SIZE] == key


def check_ids(table_id: bytes, index_id: int) -> None:
    if type(table_id) is not bytes or len(table_id) != 16:
        raise TypeError("table_id must be 16 bytes (UUID bytes)")
    if type(index_id) is not int or not 0 <= index_id < 2**32:
        raise TypeError("index_id must be an int in [0, 2**32)")


def row_prefix(table_id: bytes, index_id: int | None = None, token: PartitionToken | None = None) -> bytes:
    """Key prefix of a table's rows, one index's rows, or one partition's rows (for ranges and tests)."""
    if index_id is None:
        if token is not None:
            raise ValueError("token needs index_id")
        if type(table_id) is not bytes or len(table_id) != 16:
            raise TypeError("table_id must be 16 bytes (UUID bytes)")
        return ROW_PREFIX + table_id
    check_ids(table_id, index_id)
    p = ROW_PREFIX + table_id + index_id.to_bytes(4, "big")
    if token is None:
        return p
    if type(token) is not PartitionToken:
        raise TypeError(f"partition tokens are PartitionToken, not {type(token).__name__}")
    return p + token.raw


def segment_bounds(segment: int, total_segments: int) -> tuple[bytes, bytes | None]:
    """``(token_lo, token_hi)`` for parallel Scan segment ``segment`` of ``total_segments``: an even
    split of the 256-bit token space (``token_hi`` None for the last segment)."""
    if not 0 <= segment < total_segments:
        raise ValueError("segment out of range")
    space = 1 << (8 * TOKEN_SIZE)
    lo = (space * segment // total_segments).to_bytes(TOKEN_SIZE, "big")
    if segment == total_segments - 1:
        return lo, None
    return lo, (space * (segment + 1) // total_segments).to_bytes(TOKEN_SIZE, "big")


def shortest_separator(left: bytes, right: bytes) -> bytes:
    """Shortest s with left < s <= right: keeps inner nodes small whatever the key sizes."""
    n = min(len(left), len(right))
    i = 0
    while i < n and left[i] == right[i]:
        i += 1
    return right[: i + 1]


def split_point(sizes: list[int]) -> int:
    """Split index m (1 <= m <= len-1) that best balances the byte sizes of [:m] and [m:]."""
    total = sum(sizes)
    acc = 0
    best, best_diff = 1, None
    for m in range(1, len(sizes)):
        acc += sizes[m - 1]
        diff = abs(2 * acc - total)
        if best_diff is None or diff < best_diff:
            best, best_diff = m, diff
        elif 2 * acc > total:
            break
    return best


_U32 = struct.Struct("<I")
_U32X2 = struct.Struct("<II")


class LeafBytes:
    """A leaf kept as its plaintext plus the entries' offsets, for a write that changes one entry: the new
    plaintext is spliced from slices of the old (what ``Leaf.encode`` of the changed leaf gives, byte for byte)
    instead of building two lists of the entries and encoding them again. ``decode_node`` of the result is the
    slow path's leaf (``tests/storage/test_leaf_splice.py`` holds the two to each other)."""

    __slots__ = ("pt", "n", "offs")

    def __init__(self, pt: bytes) -> None:
        try:
            kind, n = NODE_HEADER.unpack_from(pt, 0)
            # offs[2i] .. offs[2i+1] is key i, offs[2i+1] .. offs[2i+2] its value
            offs = list(accumulate(struct.unpack_from(f"<{2 * n}I", pt, 5), initial=5 + 8 * n))
            if kind != KIND_LEAF or offs[-1] != len(pt):
                raise ValueError
        except (struct.error, ValueError):
            raise IntegrityError("malformed B+tree node") from None
        self.pt = pt
        self.n = n
        self.offs = offs

    def __repr__(self) -> str:  # never the contents: they are plaintext user data
        return f"<leaf bytes {self.n} entries>"

    def find(self, key: bytes) -> int:
        """bisect_left of ``key`` over the leaf's keys."""
        pt, offs = self.pt, self.offs
        lo, hi = 0, self.n
        while lo < hi:
            mid = (lo + hi) // 2
            if pt[offs[2 * mid] : offs[2 * mid + 1]] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def key(self, i: int) -> bytes:
        return self.pt[self.offs[2 * i] : self.offs[2 * i + 1]]

    def value(self, i: int) -> bytes:
        return self.pt[self.offs[2 * i + 1] : self.offs[2 * i + 2]]

    def replaced(self, i: int, value: bytes) -> bytes:
        """The plaintext with entry ``i``'s value replaced."""
        pt, offs = self.pt, self.offs
        at = 5 + 8 * i + 4  # entry i's value length
        return b"".join((pt[:at], _U32.pack(len(value)), pt[at + 4 : offs[2 * i + 1]], value, pt[offs[2 * i + 2] :]))

    def inserted(self, i: int, key: bytes, value: bytes) -> bytes:
        """The plaintext with (key, value) inserted as entry ``i``."""
        pt, offs, n = self.pt, self.offs, self.n
        at = 5 + 8 * i
        cut = offs[2 * i]
        return b"".join((NODE_HEADER.pack(KIND_LEAF, n + 1), pt[5:at], _U32X2.pack(len(key), len(value)),
                         pt[at:cut], key, value, pt[cut:]))

    def deleted(self, i: int) -> bytes:
        """The plaintext without entry ``i``."""
        pt, offs = self.pt, self.offs
        at = 5 + 8 * i
        return b"".join((NODE_HEADER.pack(KIND_LEAF, self.n - 1), pt[5:at], pt[at + 8 : offs[2 * i]],
                         pt[offs[2 * i + 2] :]))
