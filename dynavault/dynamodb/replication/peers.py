"""The other servers of a global table: which regions they serve, and a signed client to reach them.

``--replica-peer REGION=URL[,REGION=URL...]`` names, per region, the dynavault server that serves it;
``--replica-peer-credentials FILE`` (JSON, owner-only like the root key file) holds the access key this
server signs with at each peer: ``{"us-west-2": {"aws_access_key_id": "...", "aws_secret_access_key": "..."}}``.
The key must be one of the peer's own credentials, of the same account as the tables it replicates (the
peer acts as that principal, as for any request). Secrets are never logged nor shown by any repr.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from dynavault.errors import AWSError, StartupError

#: the internal operations' target prefix (server/runtime/ mounts it, signed as DynamoDB)
TARGET_PREFIX = "DynavaultReplication"
#: statuses a peer's answer maps to (ReplicaStatus of the remote member, as this server sees it)
NOT_AUTHORIZED = "REPLICATION_NOT_AUTHORIZED"
_AUTH_CODES = frozenset({"UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException",
                         "MissingAuthenticationTokenException", "IncompleteSignatureException"})


class PeerError(Exception):
    """A peer's refusal or absence; ``code`` is its error code (or ``PeerUnreachable``)."""

    def __init__(self, region: str, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"peer for {region}: {code}: {message}")
        self.region = region
        self.code = code
        self.message = message
        self.status = status

    @property
    def not_authorized(self) -> bool:
        return self.code in _AUTH_CODES

    def as_aws(self) -> AWSError:
        if self.code in ("ValidationException", "ResourceNotFoundException", "ResourceInUseException"):
            return AWSError(self.code, self.message)
        return AWSError("ValidationException", f"The replica in region {self.region} could not be reached: "
                        f"{self.describe()}")

    def describe(self) -> str:
        if self.code == "PeerUnreachable":
            return f"the server of {self.region} cannot be reached ({self.message}); replication resumes when it answers"
        if self.not_authorized:
            return f"the server of {self.region} refused this server's replication credential ({self.code})"
        return f"the server of {self.region} answered {self.code}"


@dataclass(frozen=True)
class Peer:
    region: str
    url: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"<Peer {self.region} {self.url}>"


class Peers:
    """The configured peers; ``call`` posts one signed internal operation to the server of a region."""

    def __init__(self, peers: dict[str, Peer], *, timeout: float = 5.0) -> None:
        self.peers = peers
        self.timeout = timeout
        self._pool = None

    def __repr__(self) -> str:
        return f"<Peers {sorted(self.peers)}>"

    def __contains__(self, region: str) -> bool:
        return region in self.peers

    def call(self, region: str, operation: str, params: dict) -> dict:
        import urllib3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        peer = self.peers[region]
        if self._pool is None:
            self._pool = urllib3.PoolManager(maxsize=4, retries=False)
        body = orjson.dumps(params)
        headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"{TARGET_PREFIX}.{operation}"}
        request = AWSRequest("POST", peer.url, data=body, headers=headers)
        # signed for the peer's region: the peer serves it, and answers in its own scope
        SigV4Auth(Credentials(peer.access_key_id, peer.secret_access_key), "dynamodb", region).add_auth(request)
        try:
            resp = self._pool.request("POST", peer.url, body=body, headers=dict(request.headers),
                                      timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout * 6))
        except Exception as exc:  # refused, reset, timeout: the peer is down or cut off
            raise PeerError(region, "PeerUnreachable", type(exc).__name__) from None
        try:
            data = orjson.loads(resp.data) if resp.data else {}
        except orjson.JSONDecodeError:
            data = {}
        if resp.status == 200:
            return data
        code = str(data.get("__type", f"HTTP{resp.status}")).rpartition("#")[2]
        raise PeerError(region, code, str(data.get("message") or data.get("Message") or ""), resp.status)


def parse_peers(spec: str, credentials_file: str) -> Peers:
    """Peers from the settings; refuses to start (StartupError) on a malformed entry or a missing secret."""
    urls: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        region, sep, url = part.partition("=")
        if not sep or not region or not url.startswith(("http://", "https://")):
            raise StartupError(f"--replica-peer takes REGION=URL (http:// or https://), not {part!r}")
        urls[region.strip()] = url.strip().rstrip("/") + "/"
    if not urls:
        return Peers({})
    if not credentials_file:
        raise StartupError("--replica-peer needs --replica-peer-credentials FILE (the access key used at each peer)")
    path = Path(credentials_file)
    try:
        info = path.stat()
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise StartupError(f"cannot read --replica-peer-credentials {path}: {type(exc).__name__}") from None
    if os.name == "posix" and stat.S_IMODE(info.st_mode) & 0o077:
        raise StartupError(f"--replica-peer-credentials {path} is readable by others: chmod 600 it")
    peers = {}
    for region, url in urls.items():
        entry = doc.get(region) if isinstance(doc, dict) else None
        if not isinstance(entry, dict) or not entry.get("aws_access_key_id") or \
                not entry.get("aws_secret_access_key"):
            raise StartupError(f"--replica-peer-credentials {path} has no aws_access_key_id/aws_secret_access_key "
                               f"for {region}")
        peers[region] = Peer(region, url, str(entry["aws_access_key_id"]), str(entry["aws_secret_access_key"]))
    return Peers(peers)
