"""DAX control-plane records: clusters, parameter groups, subnet groups and events, kept in the table store.

Every record is control-plane metadata of the kind DESIGN.md invariant 1 allows in plaintext (names, node
types, settings, tags), stored as a ``CatalogRecord`` exactly as the table catalog and backup records are:
no item data, key or attribute name ever lands here. Rows are per account and region:
``DAX_CONTROL_PREFIX + kind + account + region + name``. Events are keyed by time so a range reads them
in order; they are dropped after DAX's 14 days.

The data plane reads the TTLs of the cluster a listener serves through ``ClusterRecords.ttls_for``. With
several workers a change committed by one is counted on the shared change counter (``storage.signal``)
and every other process reloads its small port -> TTL mirror before its next lookup.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import orjson

from dynavault.dynamodb.layout import DAX_CONTROL_PREFIX
from dynavault.errors import AWSError
from dynavault.storage.kv.base import KVReader, KVStore, KVTransaction, prefix_end
from dynavault.storage.sealed import CatalogRecord
from dynavault.storage.signal import DAX_CONTROL, ChangeSignal, Watch

from .cluster_keys import ClusterKeys

log = logging.getLogger(__name__)

CLUSTER = b"cluster\x00"
PARAMETER_GROUP = b"pgroup\x00"
SUBNET_GROUP = b"sgroup\x00"
EVENT = b"event\x00"

#: the parameter group every account has and a cluster gets when it names none (cannot be changed or deleted)
DEFAULT_PARAMETER_GROUP = "default.dax1.0"
DEFAULT_SUBNET_GROUP = "default"
RECORD_TTL = "record-ttl-millis"
QUERY_TTL = "query-ttl-millis"
#: DAX's default for both TTLs: five minutes
DEFAULT_TTL_MILLIS = 300_000
#: the parameters a DAX parameter group holds, with DAX's descriptions of them
PARAMETERS = {
    QUERY_TTL: "Duration in milliseconds for queries to remain cached",
    RECORD_TTL: "Duration in milliseconds for records to remain valid in cache (Default: 0 = infinite)",
}
#: DescribeEvents can reach back this far (DAX keeps 14 days of events)
EVENT_RETENTION_SECONDS = 14 * 86400.0


@dataclass(frozen=True, slots=True)
class Ttls:
    """The item-cache and query-cache TTLs of a cluster, in milliseconds (0: DAX's "infinite" for records)."""

    record_millis: int = DEFAULT_TTL_MILLIS
    query_millis: int = DEFAULT_TTL_MILLIS


@dataclass(slots=True)
class _Served:
    """The clusters one listener serves, per the mirror: [(account, region, Ttls)], and the answers of
    ``cluster_ttls`` computed from them, {(account, region): Ttls | None}."""

    clusters: list[tuple[str, str, Ttls]]
    memo: dict[tuple[str, str], Ttls | None]


def advertised_host(host: str) -> str:
    """The address clients are told to reach this server at: the configured host, or the loopback address
    when the server listens on every interface (a wildcard address is no address to connect to)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host


def _scope(kind: bytes, account: str, region: str) -> bytes:
    return DAX_CONTROL_PREFIX + kind + account.encode() + b"\x00" + region.encode() + b"\x00"


def _key(kind: bytes, account: str, region: str, name: str) -> bytes:
    return _scope(kind, account, region) + name.encode()


#: the member binding a stored record to the account and region its key names (a plaintext row can be moved
#: on disk under another account's key: it must not show there)
_SCOPE = "Scope"
_STR, _NUM, _LIST, _DICT, _BOOL = str, (int, float), list, dict, bool
#: per kind: the member naming the record (equal to its key's name; None for events) and the members the code
#: relies on, with their types (checked when present; the named ones must be present)
_SHAPES: dict[bytes, tuple[str | None, dict[str, type | tuple[type, ...]], tuple[str, ...]]] = {
    CLUSTER: ("ClusterName", {"ClusterName": _STR, "ClusterArn": _STR, "NodeType": _STR, "Nodes": _LIST,
                              "ParameterGroupName": _STR, "SubnetGroup": _STR, "Encryption": _STR, "Tags": _LIST,
                              "IamRoleArn": _STR, "SSEEnabled": _BOOL, "CreatingUntil": _NUM,
                              "DeletingUntil": _NUM, "ModifyingUntil": _NUM, "KeyBlob": _STR,
                              "SecurityGroupIds": _LIST, "Account": _STR, "Region": _STR},
              ("ClusterName", "ClusterArn", "NodeType", "Nodes", "ParameterGroupName", "SubnetGroup", "Tags")),
    PARAMETER_GROUP: ("ParameterGroupName", {"ParameterGroupName": _STR, "Parameters": _DICT,
                                             "Description": _STR}, ("ParameterGroupName", "Parameters")),
    SUBNET_GROUP: ("SubnetGroupName", {"SubnetGroupName": _STR, "SubnetIds": _LIST, "Description": _STR},
                   ("SubnetGroupName", "SubnetIds")),
    EVENT: (None, {"SourceName": _STR, "SourceType": _STR, "Message": _STR, "Date": _NUM},
            ("SourceName", "SourceType", "Message", "Date")),
}


def _fits(rec: dict, kind: bytes) -> bool:
    _, types, required = _SHAPES[kind]
    if any(m not in rec for m in required):
        return False
    if any(rec.get(m) is not None and (not isinstance(rec[m], t) or isinstance(rec[m], bool) and t is _NUM)
           for m, t in types.items()):
        return False
    if kind == PARAMETER_GROUP:
        return all(isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 18
                   for v in rec["Parameters"].values())
    if kind == CLUSTER:
        return (all(isinstance(n, dict) and isinstance(n.get("NodeId"), str) for n in rec["Nodes"])
                and all(isinstance(t, dict) and isinstance(t.get("Key"), str) for t in rec["Tags"]))
    return True


def _decode(kind: bytes, key: bytes, raw: bytes) -> dict | None:
    """The row at ``key`` as the record it must be, or None (logged) when it is not one: records are
    plaintext, so one altered on disk or moved under another key is ignored — never a 500, never shown to
    another account."""
    account, _, rest = key[len(DAX_CONTROL_PREFIX) + len(kind):].partition(b"\x00")
    region, _, name = rest.partition(b"\x00")
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        rec = None
    ok = isinstance(rec, dict) and _fits(rec, kind)
    if ok:
        scope = rec.pop(_SCOPE, None)
        where = [account.decode(errors="replace"), region.decode(errors="replace")]
        named = _SHAPES[kind][0]
        # rows written before the binding member existed are bound by what they name themselves
        ok = ((scope == where if scope is not None else rec.get("Account", where[0]) == where[0]
               and rec.get("Region", where[1]) == where[1])
              and (named is None or rec[named] == name.decode(errors="replace")))
    if not ok:
        log.warning("a stored DAX %s record is not one (altered on disk?): ignored (%d bytes)",
                    kind.rstrip(b"\x00").decode(), len(raw))
        return None
    return rec


def _decoded(kind: bytes, rows: Iterable[tuple[bytes, bytes]]) -> list[dict]:
    return [rec for rec in (_decode(kind, k, raw) for k, raw in rows) if rec is not None]


class ClusterRecords:
    """Reads and writes the DAX control plane's records in one store."""

    def __init__(self, store: KVStore, *, dax_port: int | None = None, dax_tls_port: int | None = None,
                 signal: ChangeSignal | None = None, clock: Callable[[], float] = time.time,
                 keys: ClusterKeys | None = None) -> None:
        """``keys``: encrypted clusters' keys, opened (a KMS Decrypt, once per process) when this process
        starts serving a cluster."""
        self.store = store
        self.keys = keys
        #: the listener a cluster of each ClusterEndpointEncryptionType is served on (None: not configured)
        self.ports = {"NONE": dax_port, "TLS": dax_tls_port}
        self.clock = clock
        self._watch = Watch(signal or ChangeSignal(None), DAX_CONTROL)
        self._lock = threading.Lock()
        #: port -> the clusters served there; None until first read
        self._mirror: dict[int, _Served] | None = None

    def __repr__(self) -> str:
        return f"ClusterRecords({self.store!r})"

    def port_for(self, encryption: str) -> int | None:
        """This server's listener for clusters of ``encryption`` (NONE: dax://, TLS: daxs://), if configured."""
        return self.ports.get(encryption)

    # -- reads -----------------------------------------------------------------------------------------------
    @staticmethod
    def get(r: KVReader, kind: bytes, account: str, region: str, name: str) -> dict | None:
        key = _key(kind, account, region, name)
        raw = r.get(key)
        return _decode(kind, key, raw) if raw is not None else None

    @staticmethod
    def list(r: KVReader, kind: bytes, account: str, region: str) -> list[dict]:
        start = _scope(kind, account, region)
        return _decoded(kind, r.range(start, prefix_end(start)))

    @staticmethod
    def every(r: KVReader, kind: bytes) -> Iterator[dict]:
        start = DAX_CONTROL_PREFIX + kind
        yield from _decoded(kind, r.range(start, prefix_end(start)))

    @staticmethod
    def events(r: KVReader, account: str, region: str, start: float, end: float) -> list[dict]:
        """Events of [start, end), newest first."""
        scope = _scope(EVENT, account, region)
        lo = scope + _time_key(start)
        hi = scope + _time_key(end)
        return _decoded(EVENT, r.range(lo, hi, reverse=True))

    # -- writes ----------------------------------------------------------------------------------------------
    @staticmethod
    def put(tx: KVTransaction, kind: bytes, account: str, region: str, name: str, record: dict) -> None:
        tx.put(_key(kind, account, region, name), CatalogRecord(orjson.dumps({**record, _SCOPE: [account, region]})))

    @staticmethod
    def delete(tx: KVTransaction, kind: bytes, account: str, region: str, name: str) -> None:
        tx.delete(_key(kind, account, region, name))

    def event(self, tx: KVTransaction, account: str, region: str, source_type: str, source_name: str,
              message: str) -> None:
        """Record one DescribeEvents event, and drop this scope's events past the retention."""
        now = self.clock()
        scope = _scope(EVENT, account, region)
        key = scope + _time_key(now) + uuid.uuid4().bytes[:6]
        tx.put(key, CatalogRecord(orjson.dumps({"SourceName": source_name, "SourceType": source_type,
                                                "Message": message, "Date": now, _SCOPE: [account, region]})))
        expired = [k for k, _ in tx.range(scope, scope + _time_key(now - EVENT_RETENTION_SECONDS), limit=256)]
        for k in expired:
            tx.delete(k)

    def reset(self, account: str, region: str) -> int:
        """Delete every cluster, parameter group and subnet group of ``account``/``region`` at once, with no
        DELETING phase (DynavaultAdmin.Reset: a test suite's clean slate; the default groups are not records and
        stay). Each cluster gets its "Cluster deleted." event, as DeleteCluster gives it. Returns the number
        of clusters deleted."""
        with self.store.transaction() as tx:
            clusters = self.list(tx, CLUSTER, account, region)
            for kind in (CLUSTER, PARAMETER_GROUP, SUBNET_GROUP):
                start = _scope(kind, account, region)
                for key in [k for k, _ in tx.range(start, prefix_end(start))]:
                    tx.delete(key)
            for cluster in clusters:
                self.event(tx, account, region, "CLUSTER", cluster["ClusterName"], "Cluster deleted.")
        self.changed()
        return len(clusters)

    def changed(self) -> None:
        """A committed change this process made: others reload their mirror, this one too."""
        with self._lock:
            self._mirror = None
        self._watch.changed_here()

    # -- the data plane's view -------------------------------------------------------------------------------
    def start_serving(self) -> None:
        """A listener of this process starts: read the clusters it serves now (opening their keys), not at the
        first request."""
        self._clusters_on(0)

    def ttls_for(self, port: int, account: str | None = None, region: str | None = None) -> Ttls:
        """The TTLs the cache of a listener on ``port`` uses: those of the clusters served on that port (of
        ``account`` and ``region`` when given), the shortest of each when there are several (no client may
        see an entry older than its cluster allows); DAX's defaults when no cluster is served there."""
        clusters = [t for a, rg, t in self._clusters_on(port)
                    if (account is None or a == account) and (region is None or rg == region)]
        if not clusters:
            return Ttls()
        return Ttls(min(t.record_millis for t in clusters), min(t.query_millis for t in clusters))

    def has_cluster(self, port: int, account: str | None = None, region: str | None = None) -> bool:
        """Whether some cluster (of ``account``/``region`` when given) is served on ``port``."""
        return any((account is None or a == account) and (region is None or rg == region)
                   for a, rg, _ in self._clusters_on(port))

    def cluster_ttls(self, port: int, account: str, region: str) -> Ttls | None:
        """``ttls_for(port, account, region)`` when ``has_cluster(port, account, region)``, else None: what
        every cached read asks, answered from a memo kept with the mirror it was computed from."""
        served = self._served(port)
        if served is None:
            return None
        key = (account, region)
        memo = served.memo
        if key in memo:
            return memo[key]
        mine = [t for a, rg, t in served.clusters if a == account and rg == region]
        found = Ttls(min(t.record_millis for t in mine), min(t.query_millis for t in mine)) if mine else None
        if len(memo) >= 4096:
            memo.clear()
        memo[key] = found
        return found

    def _clusters_on(self, port: int) -> list[tuple[str, str, Ttls]]:
        served = self._served(port)
        return served.clusters if served is not None else []

    def _served(self, port: int) -> _Served | None:
        if self._watch.stale():
            with self._lock:
                self._watch.seen()
                self._mirror = None
        mirror = self._mirror
        if mirror is None:
            mirror = self._load_mirror()
            with self._lock:
                self._mirror = mirror
        return mirror.get(port)

    def _load_mirror(self) -> dict[int, _Served]:
        out: dict[int, _Served] = {}
        served: list[dict] = []
        now = self.clock()
        with self.store.snapshot() as r:
            for cluster in self.every(r, CLUSTER):
                if cluster.get("DeletingUntil") is not None and cluster["DeletingUntil"] <= now:
                    continue
                group = cluster.get("ParameterGroupName", DEFAULT_PARAMETER_GROUP)
                values = parameter_values(None if group == DEFAULT_PARAMETER_GROUP else
                                          self.get(r, PARAMETER_GROUP, cluster["Account"], cluster["Region"], group))
                ttls = Ttls(int(values[RECORD_TTL]), int(values[QUERY_TTL]))
                # the listener configured now: a restart with other ports moves the clusters with it
                port = self.port_for(cluster["Encryption"])
                if port is not None:
                    out.setdefault(port, _Served([], {})).clusters.append((cluster["Account"], cluster["Region"],
                                                                             ttls))
                    served.append(cluster)
        for cluster in served:  # KMS is called outside the store snapshot
            self._open_key(cluster)
        return out

    def _open_key(self, cluster: dict) -> None:
        if self.keys is None or "KeyBlob" not in cluster or self.keys.is_open(cluster):
            return
        try:
            self.keys.open(cluster)
        except AWSError as err:
            # as DAX, which uses the key at launch: logged (the trail has the refused Decrypt), tried again at
            # the next reload; the key only ever seals what the cluster persists, so serving goes on
            log.warning("DAX cluster %s: its key under alias/aws/dax cannot be opened: %s", cluster["ClusterArn"],
                        err.code)


def parameter_values(group: dict | None) -> dict[str, str]:
    """A parameter group's values (the default group's when ``group`` is None)."""
    values = {QUERY_TTL: str(DEFAULT_TTL_MILLIS), RECORD_TTL: str(DEFAULT_TTL_MILLIS)}
    if group is not None:
        values.update(group.get("Parameters", {}))
    return values


# -- DAX's shapes of the records -----------------------------------------------------------------------------

def cluster_status(c: dict, now: float) -> str:
    """DAX's cluster status, from the record's transition deadlines."""
    if c.get("DeletingUntil") is not None:
        return "deleting"
    if now < c.get("CreatingUntil", 0):
        return "creating"
    if now < c.get("ModifyingUntil", 0):
        return "modifying"
    return "available"

def describe_cluster(c: dict, now: float, host: str, port: int, *, creating: bool = False) -> dict:
    """DAX's Cluster shape of a record: nodes and discovery endpoint at ``host``:``port``."""
    status = "creating" if creating else cluster_status(c, now)
    out: dict = {"ClusterName": c["ClusterName"]}
    if "Description" in c:
        out["Description"] = c["Description"]
    nodes = c["Nodes"]
    ready = [n for n in nodes if n["ReadyAt"] <= now and not creating]
    out.update({
        "ClusterArn": c["ClusterArn"], "TotalNodes": len(nodes),
        "ActiveNodes": 0 if status in ("creating", "deleting") else
        sum(1 for n in ready if now >= n.get("RebootUntil", 0)),
        "NodeType": c["NodeType"], "Status": status,
    })
    endpoint: dict = {"Port": port}
    if status not in ("creating", "deleting"):
        bracketed = f"[{host}]" if ":" in host else host
        scheme = "daxs" if c["Encryption"] == "TLS" else "dax"
        endpoint = {"Address": host, "Port": port, "URL": f"{scheme}://{bracketed}:{port}"}
        out["ClusterDiscoveryEndpoint"] = endpoint
        out["Nodes"] = [_node(n, now, host, port) for n in nodes]
    else:
        out["ClusterDiscoveryEndpoint"] = endpoint
    out["PreferredMaintenanceWindow"] = c["PreferredMaintenanceWindow"]
    if "NotificationTopicArn" in c:
        out["NotificationConfiguration"] = {"TopicArn": c["NotificationTopicArn"],
                                            "TopicStatus": c.get("NotificationTopicStatus", "active")}
    out["SubnetGroup"] = c["SubnetGroup"]
    out["SecurityGroups"] = [{"SecurityGroupIdentifier": g, "Status": "active"} for g in c["SecurityGroupIds"]]
    out["IamRoleArn"] = c["IamRoleArn"]
    out["ParameterGroup"] = {"ParameterGroupName": c["ParameterGroupName"], "ParameterApplyStatus": "in-sync",
                             "NodeIdsToReboot": []}
    out["SSEDescription"] = {"Status": "ENABLED" if c["SSEEnabled"] else "DISABLED"}
    out["ClusterEndpointEncryptionType"] = c["Encryption"]
    out["NetworkType"] = c["NetworkType"]
    return out

def _node(n: dict, now: float, host: str, port: int) -> dict:
    if now < n["ReadyAt"]:
        # a node being added shows no endpoint and no creation time until it is ready (as DAX documents)
        return {"NodeId": n["NodeId"], "NodeStatus": "creating"}
    return {"NodeId": n["NodeId"], "Endpoint": {"Address": host, "Port": port},
            "NodeCreateTime": n["NodeCreateTime"], "AvailabilityZone": n["AvailabilityZone"],
            "NodeStatus": "rebooting" if now < n.get("RebootUntil", 0) else "available",
            "ParameterGroupStatus": "in-sync"}


def group_shape(group: dict) -> dict:
    out = {"ParameterGroupName": group["ParameterGroupName"]}
    if "Description" in group:
        out["Description"] = group["Description"]
    return out


def subnet_shape(group: dict, account: str, region: str) -> dict:
    # one stable, made-up VPC per account and region: these groups are records, no network exists behind them
    vpc = "vpc-" + hashlib.sha256(f"{account}/{region}".encode()).hexdigest()[:17]
    out = {"SubnetGroupName": group["SubnetGroupName"]}
    if "Description" in group:
        out["Description"] = group["Description"]
    out["VpcId"] = vpc
    out["Subnets"] = [{"SubnetIdentifier": s, "SubnetAvailabilityZone": f"{region}{'abc'[i % 3]}",
                       "SupportedNetworkTypes": ["ipv4"]} for i, s in enumerate(group["SubnetIds"])]
    out["SupportedNetworkTypes"] = ["ipv4"]
    return out


def parameters_shape(values: dict[str, str]) -> list[dict]:
    return [{"ParameterName": name, "ParameterType": "DEFAULT", "ParameterValue": values[name],
             "NodeTypeSpecificValues": [], "Description": text, "Source": "user", "DataType": "integer",
             "AllowedValues": "0-", "IsModifiable": "TRUE", "ChangeType": "IMMEDIATE"}
            for name, text in sorted(PARAMETERS.items())]


def _time_key(ts: float) -> bytes:
    # microseconds, fixed width: keys sort in time order
    return b"%017d" % max(0, int(ts * 1_000_000))
