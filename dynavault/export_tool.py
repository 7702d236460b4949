"""``dynavault export decrypt SRC DST``: an export written to a local bucket, as plain AWS files.

Every data file of an export here is an envelope (``dynamodb/exports/sealing.py``) under a data key of its own;
this opens each one and writes the plain ``.json.gz`` / ``.ion.gz`` file beside copies of the manifests, so DST
is exactly what AWS writes (and what ``aws s3 cp`` of a real export gives): readable by Athena, Glue, a script,
or ImportTable in AWS. The data keys are unwrapped either

- through the KMS API with the user's own credentials (``--endpoint-url``, the usual AWS_* variables or
  profile): for S3SseAlgorithm KMS, with the user's permission on the key (kms:Decrypt, audited); or
- offline, from the server's data dir and root key file (``--data-dir``, ``--root-key-file``): for either
  algorithm; AES256 (SSE-S3) objects are under the server's own key, so only this way opens them, as only S3
  can read an SSE-S3 object.

Each file is checked: a changed byte fails its authentication, an object moved from another key is refused,
and each data file's MD5 must match manifest-files.json. Nothing is written for a file that fails; the command
exits 1 naming it. DST is the only plaintext copy: it is the user's to keep or delete.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson

from dynavault.caller import Caller
from dynavault.dynamodb.exports.sealing import AES256, ObjectKeys, check_place, is_sealed, open_sealed
from dynavault.dynamodb.exports.service import md5_b64
from dynavault.errors import IntegrityError, StartupError
from dynavault.sse.key_port import KeyPortError


class _Refused(Exception):
    pass


def _offline_keys(data_dir: str, root_key_file: str) -> ObjectKeys:
    from dynavault.offline import OfflineKms

    kms = OfflineKms(Path(data_dir), Path(root_key_file).expanduser())
    who = Caller(account="", region="", principal_arn="offline")

    def unwrap(algorithm: str, key_arn: str, blob: bytes, context: dict[str, str]) -> bytes:
        return kms.decrypt(who, blob, context)

    return ObjectKeys(_no_generate, unwrap)


def _api_keys(endpoint: str | None, region: str | None) -> ObjectKeys:
    import botocore.session

    session = botocore.session.get_session()
    client = session.create_client("kms", endpoint_url=endpoint, region_name=region or "us-east-1")

    def unwrap(algorithm: str, key_arn: str, blob: bytes, context: dict[str, str]) -> bytes:
        if algorithm == AES256:
            raise _Refused("an AES256 (SSE-S3) object is under the server's own key: decrypt it offline "
                           "(--data-dir and --root-key-file)")
        try:
            return client.decrypt(CiphertextBlob=blob, EncryptionContext=context, KeyId=key_arn)["Plaintext"]
        except client.exceptions.ClientError as err:
            e = err.response.get("Error", {})
            raise _Refused(f"KMS refused Decrypt: {e.get('Code')}: {e.get('Message')}") from None

    return ObjectKeys(_no_generate, unwrap)


def _no_generate(*_args) -> tuple[bytes, bytes, str]:
    raise _Refused("decrypting never makes keys")


def _manifest_checksums(src: Path) -> dict[str, str]:
    """data file path (relative to its export folder's bucket root) -> md5Checksum, from manifest-files.json."""
    out: dict[str, str] = {}
    for manifest in src.rglob("manifest-files.json"):
        for line in manifest.read_bytes().splitlines():
            if line.strip():
                doc = orjson.loads(line)
                out[doc["dataFileS3Key"]] = doc.get("md5Checksum", "")
    return out


def decrypt_export(src: Path, dst: Path, keys: ObjectKeys) -> tuple[int, int]:
    """Write SRC's files to DST, data files opened; -> (files decrypted, files copied)."""
    if not src.is_dir():
        raise StartupError(f"export decrypt: {src} is not a directory")
    checksums = _manifest_checksums(src)
    opened = copied = 0
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src).as_posix()
        data = path.read_bytes()
        if is_sealed(data):
            try:
                check_place(data, None, rel)
                data = open_sealed(keys, data)
            except IntegrityError as err:
                raise _Refused(f"{rel}: {err}") from None
            except KeyPortError as err:
                raise _Refused(f"{rel}: the key service refused it ({err.code}: {err.message})") from None
            want = next((v for k, v in checksums.items() if k == rel or k.endswith("/" + rel)), None)
            if want and md5_b64(data) != want:
                raise _Refused(f"{rel}: its MD5 does not match manifest-files.json")
            opened += 1
        else:
            copied += 1
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return opened, copied


def main(args) -> int:
    src, dst = Path(args.src), Path(args.dst)
    if args.data_dir:
        keys = _offline_keys(args.data_dir, args.root_key_file or
                             str(Path.home() / ".config" / "dynavault" / "root.key"))
    else:
        keys = _api_keys(args.endpoint_url, args.region)
    try:
        opened, copied = decrypt_export(src, dst, keys)
    except _Refused as err:
        print(f"dynavault export decrypt: refused: {err}", file=sys.stderr)
        return 1
    print(f"dynavault export decrypt: {opened} data file(s) decrypted, {copied} file(s) copied to {dst}")
    return 0


def add_parser(sub) -> None:
    export = sub.add_parser("export", help="work with exports written to --bucket-dir")
    export_sub = export.add_subparsers(dest="export_command", required=True)
    dec = export_sub.add_parser("decrypt", help="write an export as plain AWS files (SRC: the export folder or "
                                "any folder above it in the bucket)")
    dec.add_argument("src")
    dec.add_argument("dst")
    dec.add_argument("--endpoint-url", dest="endpoint_url", default=None,
                     help="KMS endpoint (the server's URL); credentials from the usual AWS_* variables")
    dec.add_argument("--region", default=None)
    dec.add_argument("--data-dir", dest="data_dir", default=None, help="decrypt offline from the server's data dir")
    dec.add_argument("--root-key-file", dest="root_key_file", default=None)
    dec.set_defaults(run=main)

