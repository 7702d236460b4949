"""Request and response content codings: gzip / deflate bodies in (bounded: a bomb costs at most the request
size limit, then 413) and the response coding DynamoDB picks for an Accept-Encoding header."""

from __future__ import annotations

import zlib

from dynavault.errors import AWSError

#: DynamoDB's request size limit (BatchWriteItem and TransactWriteItems top out near 16 MB).
MAX_BODY_BYTES = 16 * 1024 * 1024
#: DynamoDB compresses a response only from this size on, and only when the client asked (Accept-Encoding)
COMPRESS_MIN_BYTES = 4096
#: zlib level of compressed responses: cheap, since compression runs on the event loop
_COMPRESS_LEVEL = 1
_CORAL = "com.amazon.coral.service#"


def too_large() -> AWSError:
    return AWSError("RequestEntityTooLarge", "Request Entity Too Large", 413, type_prefix=_CORAL)


def _inflate(body: bytes, wbits: int) -> bytes:
    """Decode every member of ``body`` (gzip allows several, one after another), the output capped at
    MAX_BODY_BYTES in total: a bomb costs at most that much memory, then 413. A member cut short is
    zlib.error: a truncated body is never taken for the part of it that arrived."""
    out: list[bytes] = []
    size = 0
    rest = body
    while True:
        d = zlib.decompressobj(wbits)
        part = d.decompress(rest, MAX_BODY_BYTES + 1 - size)
        size += len(part)
        if size > MAX_BODY_BYTES or d.unconsumed_tail:
            raise too_large()
        out.append(part)
        if not d.eof:
            raise zlib.error("truncated compressed body")
        rest = d.unused_data
        if not rest or wbits != 16 + zlib.MAX_WBITS:
            if rest:
                raise zlib.error("data after the end of the compressed body")
            return out[0] if len(out) == 1 else b"".join(out)


def decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise AWSError("SerializationException", f"Unsupported Content-Encoding: {encoding}", type_prefix=_CORAL)
    try:
        return _inflate(body, wbits)
    except zlib.error:
        if encoding == "deflate":  # some clients send raw deflate without the zlib header: same cap
            try:
                return _inflate(body, -zlib.MAX_WBITS)
            except zlib.error:
                pass
        # DynamoDB answers a broken gzip body with a 500; here bad input is never a 500 (DESIGN.md invariant 7).
        raise AWSError("SerializationException", "Could not decode the request body", type_prefix=_CORAL) from None


def accepted_encoding(header: str) -> str | None:
    """The response encoding DynamoDB picks for an Accept-Encoding header: "gzip", "deflate" or None.

    As observed on DynamoDB (ScyllaDB's Alternator tests, test_compressed_response.py, record its answers):
    names case-insensitive, unknown or malformed entries ignored, the first ``q`` of an entry counts (a
    missing or unparsable one is 1, above 1 is 1, below 0 is 0), ``identity`` never chosen, ``*`` stands for
    each coding not named; the highest non-zero q wins, a named coding before ``*``, then the earlier entry,
    then gzip."""
    best: dict[str, tuple[float, int]] = {}
    star: float | None = None
    for position, entry in enumerate(header.split(",")):
        name, *params = entry.split(";")
        name = name.strip().lower()
        if name not in ("gzip", "deflate", "*"):
            continue
        q = 1.0
        for param in params:
            key, eq, value = param.partition("=")
            if eq and key.strip() == "q":
                try:
                    q = min(1.0, max(0.0, float(value.strip())))
                except ValueError:
                    q = 1.0
                break
        if name == "*":
            star = q if star is None else max(star, q)
        elif name not in best or q > best[name][0]:
            best[name] = (q, position if name not in best else best[name][1])
    ranked = []
    for coding, tie in (("gzip", 0), ("deflate", 1)):
        if coding in best:
            q, position = best[coding]
            ranked.append((q, 1, -position, -tie, coding))
        elif star is not None:
            ranked.append((star, 0, 0, -tie, coding))
    ranked = [r for r in ranked if r[0] > 0]
    return max(ranked)[4] if ranked else None


def compress(payload: bytes, coding: str) -> bytes:
    if coding == "gzip":
        c = zlib.compressobj(_COMPRESS_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    else:
        c = zlib.compressobj(_COMPRESS_LEVEL)
    return c.compress(payload) + c.flush()
