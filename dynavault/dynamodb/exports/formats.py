"""The file formats of DynamoDB's exports and imports: DynamoDB JSON lines, Amazon Ion text, CSV; GZIP/ZSTD.

Export lines (AWS's documented output): full export ``{"Item": {...}}`` per item (DynamoDB JSON) or
``{Item:{...}}`` (Ion text, the file starting ``$ion_1_0``); incremental export
``{"Metadata": {"WriteTimestampMicros": {"N": ...}}, "Keys": {...}, "NewImage": {...}, "OldImage": {...}}``
(Ion: the same fields, ``WriteTimestampMicros`` an Ion number). Ion maps DynamoDB types as AWS documents:
S -> string, N -> decimal, B -> blob, BOOL -> bool, NULL -> null, L -> list, M -> struct, and sets as
lists annotated ``$dynamodb_SS`` / ``$dynamodb_NS`` / ``$dynamodb_BS``.

The Ion reader is a small recursive-descent parser of Ion's text form, bounded in depth and size, for what
an export holds (no ``sexp``, timestamps or clobs, which no DynamoDB value maps to: such a line is an error).
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import re
import zlib
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation

import orjson
import zstandard

#: nesting DynamoDB allows (32 levels of documents) plus the line's own wrapper
MAX_DEPTH = 40
#: an object (stored or decompressed) larger than this is skipped as one error: an import holds one object
#: in memory at a time, so this bounds its memory (AWS reads larger ones; split them here)
MAX_OBJECT_BYTES = 256 << 20


class LineError(ValueError):
    """A line that is not an item in the input format (counted in ErrorCount, logged, skipped)."""


# -- compression -------------------------------------------------------------------------------------------
def decompress(data: bytes, compression: str, limit: int = MAX_OBJECT_BYTES) -> bytes:
    """The object's bytes, decompressed; more than ``limit`` bytes out (a compression bomb) is an error, found
    without ever holding more than that."""
    if compression == "GZIP":
        out = _gunzip(data, limit)
    elif compression == "ZSTD":
        out = _zstd(data, decompress=True, limit=limit)
    else:
        out = data
    if len(out) > limit:
        raise LineError("object too large")
    return out


def _gunzip(data: bytes, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    rest = data
    try:
        while rest:  # several gzip members follow each other (as `cat a.gz b.gz` makes)
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = d.decompress(rest, limit - size + 1)
            while True:
                size += len(chunk)
                if size > limit:
                    raise LineError("object too large when decompressed")
                parts.append(chunk)
                if d.eof or not d.unconsumed_tail:
                    break
                chunk = d.decompress(d.unconsumed_tail, limit - size + 1)
            if not d.eof:
                raise LineError("not GZIP data (truncated)")
            rest = d.unused_data
    except zlib.error as exc:
        raise LineError(f"not GZIP data ({exc})") from None
    return b"".join(parts)


def compress_gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def compress_zstd(data: bytes) -> bytes:
    return _zstd(data, decompress=False)


def _zstd(data: bytes, *, decompress: bool, limit: int = MAX_OBJECT_BYTES) -> bytes:
    if not decompress:
        return zstandard.ZstdCompressor(level=3).compress(data)
    parts: list[bytes] = []
    size = 0
    try:
        # streamed: a frame that claims (or expands to) more than the limit stops at the limit
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
        while chunk := reader.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise LineError("object too large when decompressed")
            parts.append(chunk)
    except zstandard.ZstdError:
        raise LineError("not ZSTD data") from None
    return b"".join(parts)


# -- DynamoDB JSON -----------------------------------------------------------------------------------------
def json_line(doc: dict) -> bytes:
    return orjson.dumps(doc) + b"\n"


def parse_json_line(line: bytes) -> dict:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise LineError("not a JSON object") from None
    if not isinstance(doc, dict):
        raise LineError("not a JSON object")
    return doc


# -- Ion text: writing -------------------------------------------------------------------------------------
ION_VERSION = b"$ion_1_0 "
_BARE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_KEYWORDS = {"null", "true", "false", "nan"}


def _ion_string(text: str, quote: str = '"') -> str:
    out = [quote]
    for ch in text:
        o = ord(ch)
        if ch == quote or ch == "\\":
            out.append("\\" + ch)
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append(quote)
    return "".join(out)


def _ion_field(name: str) -> str:
    if _BARE.match(name) and name not in _KEYWORDS and not name.startswith("$ion"):
        return name
    return _ion_string(name, "'")


def ion_decimal(text: str) -> str:
    """A DynamoDB number as an Ion decimal (``103.``, ``1.5``, ``12d-40``): exact, never a float."""
    d = Decimal(text)
    sign, digits, exp = d.as_tuple()
    coeff = ("-" if sign else "") + "".join(map(str, digits))
    if exp == 0:
        return coeff + "."
    if -40 < exp < 0:
        s = format(d, "f")
        return s if "." in s else s + "."
    return f"{coeff}d{exp}"


def ion_value(value: dict, depth: int = 0) -> str:
    if depth > MAX_DEPTH:
        raise LineError("value nested too deeply")
    (t, v), = value.items()
    if t == "S":
        return _ion_string(v)
    if t == "N":
        return ion_decimal(v)
    if t == "B":
        return "{{" + (v if isinstance(v, str) else base64.b64encode(v).decode()) + "}}"
    if t == "BOOL":
        return "true" if v else "false"
    if t == "NULL":
        return "null"
    if t == "SS":
        return "$dynamodb_SS::[" + ",".join(_ion_string(s) for s in v) + "]"
    if t == "NS":
        return "$dynamodb_NS::[" + ",".join(ion_decimal(n) for n in v) + "]"
    if t == "BS":
        return "$dynamodb_BS::[" + ",".join("{{" + b + "}}" for b in v) + "]"
    if t == "L":
        return "[" + ",".join(ion_value(x, depth + 1) for x in v) + "]"
    if t == "M":
        return ion_struct(v, depth + 1)
    raise LineError(f"unknown attribute type {t}")


def ion_struct(item: dict, depth: int = 0) -> str:
    return "{" + ",".join(f"{_ion_field(k)}:{ion_value(v, depth)}" for k, v in item.items()) + "}"


def ion_line(doc: dict) -> bytes:
    """One export line in Ion text: ``{Item:{...}}``; Metadata's WriteTimestampMicros is an Ion int."""
    parts = []
    for name, value in doc.items():
        if name == "Metadata":
            micros = value["WriteTimestampMicros"]["N"]
            parts.append(f"Metadata:{{WriteTimestampMicros:{micros}}}")
        else:
            parts.append(f"{name}:{ion_struct(value)}")
    return ("{" + ",".join(parts) + "}\n").encode()


# -- Ion text: reading -------------------------------------------------------------------------------------
_NUM = re.compile(r"[+-]?(?:\d[\d_]*)(?:\.[\d_]*)?(?:[dDeE][+-]?\d+)?|[+-]?\.\d+(?:[dDeE][+-]?\d+)?")
_SYMBOL = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_WS = re.compile(r"(?:\s+|//[^\n]*\n?|/\*.*?\*/)+", re.S)
_ESC = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"', "/": "/", "a": "\a",
        "b": "\b", "f": "\f", "v": "\v", "?": "?"}


class _Ion:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def ws(self) -> None:
        m = _WS.match(self.s, self.i)
        if m:
            self.i = m.end()

    def peek(self) -> str:
        self.ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise LineError(f"Ion: expected {ch!r} at {self.i}")
        self.i += 1

    def string(self, quote: str) -> str:
        self.i += 1
        out = []
        s = self.s
        while True:
            if self.i >= len(s):
                raise LineError("Ion: unterminated string")
            ch = s[self.i]
            if ch == quote:
                self.i += 1
                return "".join(out)
            if ch == "\\":
                nxt = s[self.i + 1: self.i + 2]
                if nxt in _ESC:
                    out.append(_ESC[nxt])
                    self.i += 2
                elif nxt in ("x", "u", "U"):
                    width = {"x": 2, "u": 4, "U": 8}[nxt]
                    hexd = s[self.i + 2: self.i + 2 + width]
                    if len(hexd) != width or not all(c in "0123456789abcdefABCDEF" for c in hexd):
                        raise LineError("Ion: bad escape")
                    out.append(chr(int(hexd, 16)))
                    self.i += 2 + width
                else:
                    raise LineError("Ion: bad escape")
            else:
                out.append(ch)
                self.i += 1

    def symbol(self) -> str | None:
        ch = self.peek()
        if ch == "'" and not self.s.startswith("'''", self.i):
            return self.string("'")
        m = _SYMBOL.match(self.s, self.i)
        if m:
            self.i = m.end()
            return m.group()
        return None

    def value(self, depth: int = 0) -> tuple[list[str], object]:
        """(annotations, value): value is str, Decimal, bytes, bool, None, list or dict (field -> value)."""
        if depth > MAX_DEPTH:
            raise LineError("Ion: nested too deeply")
        annotations: list[str] = []
        while True:
            save = self.i
            sym = self.symbol() if self.peek() in "'$_" or self.peek().isalpha() else None
            if sym is not None and self.s.startswith("::", self.i):
                self.i += 2
                annotations.append(sym)
                continue
            self.i = save
            break
        ch = self.peek()
        if ch == "{":
            if self.s.startswith("{{", self.i):
                end = self.s.find("}}", self.i + 2)
                if end < 0:
                    raise LineError("Ion: unterminated blob")
                raw = "".join(self.s[self.i + 2:end].split())
                self.i = end + 2
                try:
                    return annotations, base64.b64decode(raw, validate=True)
                except ValueError:
                    raise LineError("Ion: bad blob") from None
            self.i += 1
            fields: dict = {}
            while self.peek() != "}":
                name = self.symbol() if self.peek() != '"' else self.string('"')
                if name is None:
                    raise LineError(f"Ion: expected a field name at {self.i}")
                self.expect(":")
                fields[name] = self.value(depth + 1)
                if self.peek() == ",":
                    self.i += 1
                elif self.peek() != "}":
                    raise LineError(f"Ion: expected ',' or '}}' at {self.i}")
            self.i += 1
            return annotations, fields
        if ch == "[":
            self.i += 1
            items = []
            while self.peek() != "]":
                items.append(self.value(depth + 1))
                if self.peek() == ",":
                    self.i += 1
                elif self.peek() != "]":
                    raise LineError(f"Ion: expected ',' or ']' at {self.i}")
            self.i += 1
            return annotations, items
        if ch == '"':
            return annotations, self.string('"')
        if self.s.startswith("'''", self.i):
            parts = []
            while self.s.startswith("'''", self.i):
                end = self.s.find("'''", self.i + 3)
                if end < 0:
                    raise LineError("Ion: unterminated long string")
                parts.append(_Ion("'" + self.s[self.i + 3:end].replace("'", "\\'") + "'").string("'"))
                self.i = end + 3
                self.ws()
            return annotations, "".join(parts)
        m = _NUM.match(self.s, self.i)
        if m and m.group():
            self.i = m.end()
            text = m.group().replace("_", "").replace("d", "e").replace("D", "e")
            try:
                return annotations, Decimal(text)
            except InvalidOperation:
                raise LineError("Ion: bad number") from None
        sym = self.symbol()
        if sym in ("true", "false"):
            return annotations, sym == "true"
        if sym == "null":
            if self.s.startswith(".", self.i):  # typed nulls: null.struct etc.
                self.i += 1
                self.symbol()
            return annotations, None
        raise LineError(f"Ion: unsupported value at {self.i}")


def _to_ddb(node: tuple[list[str], object]) -> dict:
    annotations, v = node
    ann = annotations[0] if annotations else ""
    if ann in ("$dynamodb_SS", "$dynamodb_NS", "$dynamodb_BS") and isinstance(v, list):
        conv = [_to_ddb(x) for x in v]
        want = {"$dynamodb_SS": "S", "$dynamodb_NS": "N", "$dynamodb_BS": "B"}[ann]
        if any(next(iter(c)) != want for c in conv):
            raise LineError(f"Ion: {ann} holds a value of another type")
        return {want + "S": [c[want] for c in conv]}
    if isinstance(v, bool):
        return {"BOOL": v}
    if v is None:
        return {"NULL": True}
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, Decimal):
        return {"N": _number_text(v)}
    if isinstance(v, bytes):
        return {"B": base64.b64encode(v).decode()}
    if isinstance(v, list):
        return {"L": [_to_ddb(x) for x in v]}
    if isinstance(v, dict):
        return {"M": {k: _to_ddb(x) for k, x in v.items()}}
    raise LineError("Ion: unsupported value")


def _number_text(d: Decimal) -> str:
    if not d.is_finite():
        raise LineError("Ion: not a DynamoDB number")
    return str(d)


def _ion_doc(v: object) -> dict:
    if not isinstance(v, dict):
        raise LineError("Ion: a top-level value is not a struct")
    doc = {}
    for name, node in v.items():
        if name == "Metadata":
            inner = node[1]
            doc[name] = {k: {"N": _number_text(x[1])} for k, x in inner.items()
                         if isinstance(x[1], Decimal)} if isinstance(inner, dict) else {}
            continue
        conv = _to_ddb(node)
        if "M" not in conv:
            raise LineError(f"Ion: {name} is not a struct")
        doc[name] = conv["M"]
    return doc


def ion_documents(text: str) -> Iterator[dict | LineError]:
    """Each top-level struct of an Ion text document (``$ion_1_0`` markers skipped), its fields as DynamoDB
    JSON (``{"Item": {...}}``); a malformed value is yielded as its LineError and reading resumes on the
    next line (one bad value costs one line, as a bad JSON line does)."""
    p = _Ion(text)
    while True:
        p.ws()
        if p.i >= len(p.s):
            return
        if p.s.startswith("$ion_1_0", p.i):
            p.i += len("$ion_1_0")
            continue
        start = p.i
        try:
            yield _ion_doc(p.value()[1])
        except LineError as err:
            yield err
            nl = p.s.find("\n", start)
            if nl < 0:
                return
            p.i = nl + 1


# -- CSV ---------------------------------------------------------------------------------------------------
def csv_rows(text: str, delimiter: str, header: list[str] | None) -> Iterator[dict | LineError]:
    """Rows as {column: text}; the first row is the header unless ``header`` is given (AWS's HeaderList)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    names = header
    for row in reader:
        if names is None:
            names = row
            if len(set(names)) != len(names) or any(not n for n in names):
                yield LineError("CSV header has empty or repeated column names")
                return
            continue
        if not row:
            continue
        if len(row) != len(names):
            yield LineError(f"CSV row has {len(row)} fields, the header {len(names)}")
            continue
        yield dict(zip(names, row, strict=True))


def csv_item(row: dict, key_types: dict[str, str]) -> dict:
    """AWS's CSV import: key attributes typed by the table's definitions, every other value a string; an
    empty non-key value is left out."""
    item = {}
    for name, text in row.items():
        t = key_types.get(name)
        if t is None:
            if text != "":
                item[name] = {"S": text}
        elif t == "N":
            item[name] = {"N": text}
        elif t == "B":
            item[name] = {"B": text}
        else:
            item[name] = {"S": text}
    return item
