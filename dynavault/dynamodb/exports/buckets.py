"""Local buckets: ``--bucket-dir DIR``, each subdirectory a bucket, each object a file under it.

Bucket names follow S3's rules (3-63 characters of lowercase letters, digits, dots and hyphens, starting and
ending with a letter or digit), and an object key maps to a path only when it stays inside its bucket: no
empty, ``.`` or ``..`` segment, no NUL, no backslash, no absolute path, and the resolved path (symlinks
followed) must still lie under the bucket. An object is written to a temporary file in its directory and
renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from dynavault.errors import AWSError, validation

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: S3's longest key, in UTF-8 bytes
MAX_KEY_BYTES = 1024


class BucketError(Exception):
    """A bucket or key that cannot be used (the message is shown to the client)."""


def valid_bucket_name(name: object) -> bool:
    return isinstance(name, str) and bool(_BUCKET.match(name)) and ".." not in name and not _looks_like_ip(name)


def _looks_like_ip(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def check_key(key: object) -> str:
    """An object key that maps into its bucket, else BucketError."""
    if not isinstance(key, str) or not key or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise BucketError("invalid object key")
    if "\x00" in key or "\\" in key or key.startswith("/"):
        raise BucketError("invalid object key")
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        raise BucketError("invalid object key")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise BucketError("invalid object key") from None
    return key


def check_prefix(prefix: object) -> str:
    """An S3Prefix / S3KeyPrefix: empty, or a key-like path (a trailing slash is allowed)."""
    if prefix in (None, ""):
        return ""
    if not isinstance(prefix, str):
        raise BucketError("invalid prefix")
    check_key(prefix.rstrip("/") or "x")
    if prefix.strip("/") == "":
        raise BucketError("invalid prefix")
    return prefix


class BucketStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"BucketStore({str(self.root)!r})"

    def bucket_path(self, bucket: object) -> Path:
        """The bucket's directory; BucketError when the name is not a bucket name or no such bucket exists."""
        if not valid_bucket_name(bucket):
            raise BucketError(f"invalid bucket name: {bucket!r}")
        path = self.root / str(bucket)
        if not path.is_dir() or path.resolve().parent != self.root:
            raise BucketError(f"The specified bucket does not exist: {bucket}")
        return path

    def exists(self, bucket: object) -> bool:
        try:
            self.bucket_path(bucket)
        except BucketError:
            return False
        return True

    def path(self, bucket: str, key: str) -> Path:
        base = self.bucket_path(bucket)
        target = base / check_key(key)
        # a symlink inside the bucket that points out of it is refused like ``..``
        real = target.resolve()
        if real != base.resolve() and base.resolve() not in real.parents:
            raise BucketError("invalid object key")
        return target

    def put(self, bucket: str, key: str, data: bytes) -> None:
        target = self.path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.path(bucket, key) != target:  # a directory made a moment ago was swapped for a link
            raise BucketError("invalid object key")
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def delete(self, bucket: str, key: str) -> None:
        """Remove an object if it is there (S3's DeleteObject: a missing key is no error)."""
        self.path(bucket, key).unlink(missing_ok=True)

    def get(self, bucket: str, key: str, limit: int | None = None) -> bytes:
        """The object's bytes; BucketError if it is missing or (with ``limit``) larger than that."""
        target = self.path(bucket, key)
        try:
            if limit is not None and target.stat().st_size > limit:
                raise BucketError(f"object {key} is larger than {limit} bytes")
            return target.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BucketError(f"The specified key does not exist: {key}") from None

    def list(self, bucket: str, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` (S3's prefix match on the key text), in key order."""
        base = self.bucket_path(bucket)
        real_base = base.resolve()
        found = []
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames.sort()
            for name in filenames:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue
                full = Path(dirpath) / name
                if full.is_symlink():
                    continue
                key = full.relative_to(base).as_posix()
                if key.startswith(prefix) and real_base in full.resolve().parents:
                    found.append(key)
        yield from sorted(found)


def bucket_not_found(bucket: object) -> AWSError:
    """What DynamoDB answers when the S3 bucket cannot be written or read (S3's NoSuchBucket, quoted)."""
    return validation(f"S3 bucket does not exist or cannot be accessed: {bucket}")
