"""Incremental CBOR reading of a DAX stream: values one after another, with no length prefixes.

A client's bytes are first walked by a small resumable scanner that only reads headers: it finds where the
next top-level value ends, and refuses what a hostile stream could use to make the server hold or compute too
much (a declared length past the per-value cap, nesting deeper than MAX_DEPTH, tags other than the ones DAX
uses, bignums longer than any DynamoDB number, malformed headers). Only a complete, checked value is handed
to cbor2, so the decoder never waits on data, never recurses deeper than the scan allowed and never sees
cbor2's reference tags (28/29 could build cycles).
"""

from __future__ import annotations

import cbor2

#: the largest value (top-level CBOR item) a client may send: DynamoDB's largest request is ~16 MB
MAX_VALUE_BYTES = 16 * 1024 * 1024
#: nesting of arrays, maps and tags: DynamoDB documents 32 levels; expression trees add a few
MAX_DEPTH = 96
#: tags the DAX clients send: bignums (2, 3), decimal fractions (4), the DynamoDB sets (3321-3323) and a list
#: index in a document path (3324)
ALLOWED_TAGS = frozenset({2, 3, 4, 3321, 3322, 3323, 3324})
#: a bignum's bytes: 38 decimal digits need 16; a little room for clients that pad
MAX_BIGNUM_BYTES = 32

_INDEFINITE = -1


class CborStreamError(Exception):
    """The stream is not CBOR a DAX client sends, or asks for more than the caps allow: close the connection."""


class _Scan:
    """Where a partly received top-level value stands: offset of the next header and the open containers."""

    __slots__ = ("pos", "stack", "tag_wait")

    def __init__(self, pos: int) -> None:
        self.pos = pos
        #: per open container: [items left or _INDEFINITE, kind] (kind: "a" array/map items, "s2"/"s3" the
        #: chunks of an indefinite byte/text string, "t" a tag's one item, "b" a bignum tag's byte string)
        self.stack: list[list] = []
        self.tag_wait = False


class StreamDecoder:
    """``feed(bytes)``, then ``next()`` -> a decoded value, or ``NEED_MORE`` until one is complete."""

    NEED_MORE = object()

    def __init__(self, max_value_bytes: int = MAX_VALUE_BYTES, max_depth: int = MAX_DEPTH) -> None:
        self._buf = bytearray()
        self._start = 0
        self._scan: _Scan | None = None
        self.max_value_bytes = max_value_bytes
        self.max_depth = max_depth
        #: bytes of the values decoded so far (a caller bounds a request made of several values with it)
        self.consumed = 0

    def feed(self, data: bytes) -> None:
        if self._start and self._start >= len(self._buf) // 2:
            # drop what was decoded, so the buffer holds at most one partial value (and what followed it)
            del self._buf[:self._start]
            if self._scan is not None:
                self._scan.pos -= self._start
            self._start = 0
        self._buf += data

    def buffered(self) -> int:
        return len(self._buf) - self._start

    def next(self):
        """The next complete value, or NEED_MORE. Raises CborStreamError for a stream to give up on."""
        if self._scan is None:
            buf, start = self._buf, self._start
            if start >= len(buf):
                return self.NEED_MORE
            # most values of a request (its marker, method id, table name, key bytes, no options) are one
            # integer, string or null whole in the buffer: read at once, without the scan or cbor2
            head = buf[start]
            info = head & 0x1F
            if head < 0x7C and info < 28:  # major types 0-3 with a definite argument of at most 8 bytes
                if info < 24:
                    arg, size = info, 1
                else:
                    size = 1 + (1 << (info - 24))
                    arg = int.from_bytes(buf[start + 1:start + size], "big") if start + size <= len(buf) else -1
                major = head >> 5
                if arg < 0:
                    pass  # the header is not whole yet: the scan waits for it
                elif major < 2:
                    self._start = start + size
                    self.consumed += size
                    return arg if major == 0 else -1 - arg
                elif arg <= self.max_value_bytes and start + size + arg <= len(buf):
                    end = start + size + arg
                    raw = bytes(buf[start + size:end])
                    self._start = end
                    self.consumed += end - start
                    if major == 2:
                        return raw
                    try:
                        return raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise CborStreamError("undecodable value: UnicodeDecodeError") from None
            elif head == 0xF6:
                self._start = start + 1
                self.consumed += 1
                return None
            self._scan = _Scan(self._start)
        end = self._advance(self._scan)
        if end is None:
            if len(self._buf) - self._start > self.max_value_bytes:
                raise CborStreamError("value too large")
            return self.NEED_MORE
        raw = bytes(self._buf[self._start:end])
        self._start = end
        self.consumed += len(raw)
        self._scan = None
        try:
            return cbor2.loads(raw)
        except Exception as exc:  # a header the scan allowed but cbor2 refuses (bad UTF-8, say)
            raise CborStreamError(f"undecodable value: {type(exc).__name__}") from None

    def _advance(self, s: _Scan) -> int | None:
        """Move the scan on as far as the buffer allows; the end offset once the top-level value is whole."""
        buf = self._buf
        n = len(buf)
        limit = self._start + self.max_value_bytes
        while True:
            if s.pos >= n:
                return None
            if s.pos > limit:
                raise CborStreamError("value too large")
            head = buf[s.pos]
            major, info = head >> 5, head & 0x1F
            top = s.stack[-1] if s.stack else None
            if head == 0xFF:  # break: ends the innermost indefinite container
                if top is None or top[0] != _INDEFINITE:
                    raise CborStreamError("unexpected break")
                s.pos += 1
                s.stack.pop()
                if self._item_done(s):
                    return s.pos
                continue
            if top is not None and top[1] in ("s2", "s3") and not (major == int(top[1][1]) and info != 31):
                raise CborStreamError("bad chunk in an indefinite string")
            if top is not None and top[1] == "b" and (major != 2 or info == 31):
                raise CborStreamError("a bignum must be a definite byte string")
            if info < 24:
                arg, size = info, 1
            elif info <= 27:
                size = 1 + (1 << (info - 24))
                if s.pos + size > n:
                    return None
                arg = int.from_bytes(buf[s.pos + 1:s.pos + size], "big")
            elif info == 31 and major in (2, 3, 4, 5):
                arg, size = _INDEFINITE, 1
            else:
                raise CborStreamError("reserved header")
            if major in (0, 1) or major == 7:
                if major == 7 and info == 24 and arg < 32:
                    raise CborStreamError("bad simple value")
                s.pos += size
            elif major in (2, 3):
                if arg == _INDEFINITE:
                    self._open(s, [_INDEFINITE, f"s{major}"])
                    s.pos += size
                    continue
                if arg > self.max_value_bytes:
                    raise CborStreamError("string too long")
                if top is not None and top[1] == "b" and arg > MAX_BIGNUM_BYTES:
                    raise CborStreamError("bignum too long")
                if s.pos + size + arg > n:
                    if s.pos + size + arg > limit:
                        raise CborStreamError("value too large")
                    return None
                s.pos += size + arg
            elif major in (4, 5):
                count = arg if arg == _INDEFINITE or major == 4 else 2 * arg
                if count > self.max_value_bytes:  # every item takes a byte at least
                    raise CborStreamError("container too long")
                s.pos += size
                if count == 0:
                    pass  # an empty container is a whole item
                else:
                    self._open(s, [count, "a"])
                    continue
            else:  # tag
                if arg not in ALLOWED_TAGS:
                    raise CborStreamError("tag not used by DAX")
                s.pos += size
                self._open(s, [1, "b" if arg in (2, 3) else "t"])
                continue
            if self._item_done(s):
                return s.pos

    def _open(self, s: _Scan, frame: list) -> None:
        if len(s.stack) >= self.max_depth:
            raise CborStreamError("nesting too deep")
        s.stack.append(frame)

    @staticmethod
    def _item_done(s: _Scan) -> bool:
        """One item finished: count it against its container, closing the containers it completes; True when
        the top-level value is whole."""
        while s.stack:
            top = s.stack[-1]
            if top[0] == _INDEFINITE:
                return False
            top[0] -= 1
            if top[0]:
                return False
            s.stack.pop()
        return True


def split_first(data: bytes, max_depth: int = MAX_DEPTH):
    """(the first CBOR value in ``data``, the bytes after it): how key bytes carry a hash key value followed
    by a raw range key. CborStreamError if ``data`` does not start with a whole value."""
    decoder = StreamDecoder(max_value_bytes=len(data) + 1, max_depth=max_depth)
    decoder.feed(data)
    value = decoder.next()
    if value is StreamDecoder.NEED_MORE:
        raise CborStreamError("truncated value")
    return value, bytes(decoder._buf[decoder._start:])


def loads_one(data: bytes, max_depth: int = MAX_DEPTH):
    """The one CBOR value ``data`` holds (a value nested as a byte string), checked like a stream's."""
    value, rest = split_first(data, max_depth)
    if rest:
        raise CborStreamError("bytes after the value")
    return value
