"""The DAX control plane (``X-Amz-Target: AmazonDAXV3.<Op>``, JSON 1.1, signing name ``dax``): clusters,
parameter groups, subnet groups, tags and events as stored records (clusters.py).

A cluster here is one of this server's DAX listeners seen through DAX's API: every node of it is that
listener (``--dax-port`` for ClusterEndpointEncryptionType NONE, ``--dax-tls-port`` for TLS), and its
parameter group gives the TTLs the listener's cache uses for the cluster's account. Requests reach the
handlers already checked against botocore's ``dax`` model (server/shapes.py); what the model cannot say
(names, ranges, states) is checked here. Error texts are DAX's where a public source records them (noted
``# DAX's text``); the others are ours, in DAX's style.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable

from dynavault.caller import Caller
from dynavault.config import Settings

from .cluster_keys import ClusterKeys
from .clusters import (
    CLUSTER,
    DEFAULT_PARAMETER_GROUP,
    DEFAULT_SUBNET_GROUP,
    EVENT_RETENTION_SECONDS,
    ClusterRecords,
    advertised_host,
    cluster_status,
    describe_cluster,
)
from .control_common import (
    DEFAULT_WINDOW,
    MAX_NODES,
    MAX_TAGS,
    NODE_TYPE_RE,
    Handler,
    check_arn,
    check_identifier,
    fault,
    invalid,
    page,
    page_size,
    timestamp,
)
from .control_groups import GroupOperations


class ControlPlane(GroupOperations):
    """The 21 operations of botocore's ``dax`` model over ``ClusterRecords``."""

    def __init__(self, records: ClusterRecords, settings: Settings, clock: Callable[[], float] = time.time,
                 keys: ClusterKeys | None = None) -> None:
        """``keys``: encrypted clusters' keys under alias/aws/dax (None: such clusters get no key)."""
        self.records = records
        self.keys = keys
        self.settings = settings
        self.clock = clock
        self.host = advertised_host(settings.host)

    def __repr__(self) -> str:
        return f"ControlPlane({self.records!r})"

    def operations(self) -> dict[str, Handler]:
        return {name: getattr(self, _snake(name)) for name in OPERATIONS}

    # -- clusters --------------------------------------------------------------------------------------------
    def create_cluster(self, caller: Caller, p: dict) -> dict:
        name = check_identifier(p["ClusterName"], "Cluster ID", 20)
        check_arn(p["IamRoleArn"])
        node_type = p["NodeType"]
        if not NODE_TYPE_RE.fullmatch(node_type):
            raise invalid(f"Invalid node type: {node_type}")
        rf = p["ReplicationFactor"]
        if rf < 1:
            raise invalid("ReplicationFactor must be at least 1.")
        if rf > MAX_NODES:
            raise fault("NodeQuotaForClusterExceededFault",
                         f"A cluster may have at most {MAX_NODES} nodes (ReplicationFactor {rf}).")
        zones = p.get("AvailabilityZones") or []
        if zones and len(zones) != rf:
            raise fault("InvalidParameterCombinationException",
                         "The number of AvailabilityZones must equal the ReplicationFactor.")
        encryption = p.get("ClusterEndpointEncryptionType", "NONE")
        port = self.records.port_for(encryption)
        if port is None:
            flag, scheme = ("--dax-tls-port", "daxs") if encryption == "TLS" else ("--dax-port", "dax")
            raise invalid(f"This server has no {scheme}:// listener for a cluster with ClusterEndpointEncryptionType "
                           f"{encryption}: start it with {flag} PORT.")
        tags = _check_tags(p.get("Tags") or [])
        group = p.get("ParameterGroupName", DEFAULT_PARAMETER_GROUP)
        subnets = p.get("SubnetGroupName", DEFAULT_SUBNET_GROUP)
        now = self.clock()
        ready = now + self.settings.dax_cluster_seconds
        arn = f"arn:aws:dax:{caller.region}:{caller.account}:cache/{name}"
        sse = bool((p.get("SSESpecification") or {}).get("Enabled"))
        key_blob = None
        if sse and self.keys is not None:
            # KMS is called outside the store transaction: a name already taken costs no data key
            with self.records.store.snapshot() as r:
                if self._live(self.records.get(r, CLUSTER, caller.account, caller.region, name), now) is not None:
                    raise fault("ClusterAlreadyExistsFault", f"Cluster {name} already exists.")
            key_blob = self.keys.create(caller, arn)
        with self.records.store.transaction() as tx:
            if self._live(self.records.get(tx, CLUSTER, caller.account, caller.region, name), now) is not None:
                raise fault("ClusterAlreadyExistsFault", f"Cluster {name} already exists.")
            self._parameter_group(tx, caller, group)
            if subnets != DEFAULT_SUBNET_GROUP:
                self._subnet_group(tx, caller, subnets.lower())
            nodes = [{"NodeId": f"{name}-{_letter(i)}", "NodeCreateTime": now, "ReadyAt": ready,
                      "AvailabilityZone": zones[i] if zones else f"{caller.region}a"} for i in range(rf)]
            cluster = {
                "Account": caller.account, "Region": caller.region, "ClusterName": name,
                "ClusterArn": arn,
                "NodeType": node_type, "Nodes": nodes, "CreatingUntil": ready, "IamRoleArn": p["IamRoleArn"],
                "ParameterGroupName": group, "SubnetGroup": subnets.lower(),
                "SecurityGroupIds": p.get("SecurityGroupIds") or [],
                "PreferredMaintenanceWindow": p.get("PreferredMaintenanceWindow", DEFAULT_WINDOW),
                "SSEEnabled": sse,
                "Encryption": encryption, "Port": port, "Tags": tags,
                "NetworkType": p.get("NetworkType", "ipv4"),
            }
            if key_blob is not None:
                cluster["KeyBlob"] = key_blob  # the KMS ciphertext only
            for optional in ("Description", "NotificationTopicArn"):
                if optional in p:
                    cluster[optional] = p[optional]
            self.records.put(tx, CLUSTER, caller.account, caller.region, name, cluster)
            self.records.event(tx, caller.account, caller.region, "CLUSTER", name, "Cluster created.")  # DAX's text
        self.records.changed()
        # as DAX answers: the new cluster is still creating, whatever the configured creation time
        return {"Cluster": describe_cluster(cluster, now, self.host, self._port(cluster), creating=True)}

    def describe_clusters(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        with self.records.store.snapshot() as r:
            found = [c for c in self.records.list(r, CLUSTER, caller.account, caller.region)
                     if self._live(c, now) is not None]
        names = p.get("ClusterNames")
        if names:
            wanted = {n.lower() for n in names}
            have = {c["ClusterName"] for c in found}
            for n in names:
                if n.lower() not in have:
                    raise fault("ClusterNotFoundFault", f"Cluster {n} not found.")  # DAX's text
            found = [c for c in found if c["ClusterName"] in wanted]
        out = page(found, "ClusterName", p, "Clusters")
        out["Clusters"] = [describe_cluster(c, now, self.host, self._port(c)) for c in out["Clusters"]]
        return out

    def delete_cluster(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        with self.records.store.transaction() as tx:
            cluster = self._cluster(tx, caller, p["ClusterName"], now)
            if cluster.get("DeletingUntil") is not None:
                raise fault("InvalidClusterStateFault", f"Cluster {cluster['ClusterName']} is already being deleted.")
            cluster["DeletingUntil"] = now + self.settings.dax_cluster_seconds
            if self.settings.dax_cluster_seconds > 0:
                self.records.put(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"], cluster)
            else:
                self.records.delete(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"])
            self.records.event(tx, caller.account, caller.region, "CLUSTER", cluster["ClusterName"],
                               "Cluster deleted.")  # DAX's text
        self.records.changed()
        if self.keys is not None:
            self.keys.forget(cluster)
        return {"Cluster": describe_cluster(cluster, now, self.host, self._port(cluster))}

    def update_cluster(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        with self.records.store.transaction() as tx:
            cluster = self._cluster(tx, caller, p["ClusterName"], now, deleting_ok=False)
            if "ParameterGroupName" in p:
                self._parameter_group(tx, caller, p["ParameterGroupName"])
                cluster["ParameterGroupName"] = p["ParameterGroupName"]
            for member in ("Description", "PreferredMaintenanceWindow", "NotificationTopicArn",
                           "NotificationTopicStatus", "SecurityGroupIds"):
                if member in p:
                    cluster[member] = p[member]
            cluster["ModifyingUntil"] = max(cluster.get("ModifyingUntil", 0), now + self.settings.dax_cluster_seconds)
            self.records.put(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"], cluster)
            self.records.event(tx, caller.account, caller.region, "CLUSTER", cluster["ClusterName"],
                               "Cluster configuration updated.")
        self.records.changed()
        return {"Cluster": describe_cluster(cluster, now, self.host, self._port(cluster))}

    def increase_replication_factor(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        new = p["NewReplicationFactor"]
        with self.records.store.transaction() as tx:
            cluster = self._cluster(tx, caller, p["ClusterName"], now, available=True)
            nodes = cluster["Nodes"]
            if new <= len(nodes):
                raise invalid(f"NewReplicationFactor {new} must be greater than the current replication factor "
                               f"{len(nodes)}.")
            if new > MAX_NODES:
                raise fault("NodeQuotaForClusterExceededFault",
                             f"A cluster may have at most {MAX_NODES} nodes (NewReplicationFactor {new}).")
            zones = p.get("AvailabilityZones") or []
            used = {n["NodeId"] for n in nodes}
            ready = now + self.settings.dax_cluster_seconds
            letters = (c for c in _letters() if f"{cluster['ClusterName']}-{c}" not in used)
            added = []
            for i in range(new - len(nodes)):
                node_id = f"{cluster['ClusterName']}-{next(letters)}"
                added.append(node_id)
                nodes.append({"NodeId": node_id, "NodeCreateTime": ready, "ReadyAt": ready,
                              "AvailabilityZone": zones[i] if i < len(zones) else f"{caller.region}a"})
            cluster["ModifyingUntil"] = ready
            self.records.put(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"], cluster)
            for node_id in added:
                self.records.event(tx, caller.account, caller.region, "CLUSTER", cluster["ClusterName"],
                                   f"Added node {node_id}.")
        self.records.changed()
        return {"Cluster": describe_cluster(cluster, now, self.host, self._port(cluster))}

    def decrease_replication_factor(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        new = p["NewReplicationFactor"]
        with self.records.store.transaction() as tx:
            cluster = self._cluster(tx, caller, p["ClusterName"], now, available=True)
            nodes = cluster["Nodes"]
            if not 1 <= new < len(nodes):
                raise invalid(f"NewReplicationFactor {new} must be at least 1 and less than the current "
                               f"replication factor {len(nodes)}.")
            remove = p.get("NodeIdsToRemove")
            if remove:
                ids = {n["NodeId"] for n in nodes}
                for node_id in remove:
                    if node_id not in ids:
                        raise fault("NodeNotFoundFault", f"Node {node_id} not found.")
                if len(set(remove)) != len(nodes) - new:
                    raise fault("InvalidParameterCombinationException",
                                 f"NodeIdsToRemove must name {len(nodes) - new} node(s) to reach a replication "
                                 f"factor of {new}.")
                gone = set(remove)
            else:
                gone = {n["NodeId"] for n in nodes[new:]}
            cluster["Nodes"] = [n for n in nodes if n["NodeId"] not in gone]
            self.records.put(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"], cluster)
            for node_id in sorted(gone):
                self.records.event(tx, caller.account, caller.region, "CLUSTER", cluster["ClusterName"],
                                   f"Removed node {node_id}.")  # DAX's text
        self.records.changed()
        return {"Cluster": describe_cluster(cluster, now, self.host, self._port(cluster))}

    def reboot_node(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        with self.records.store.transaction() as tx:
            cluster = self._cluster(tx, caller, p["ClusterName"], now, available=True)
            node = next((n for n in cluster["Nodes"] if n["NodeId"] == p["NodeId"]), None)
            if node is None:
                raise fault("NodeNotFoundFault", f"Node {p['NodeId']} not found.")
            node["RebootUntil"] = now + self.settings.dax_cluster_seconds
            self.records.put(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"], cluster)
            self.records.event(tx, caller.account, caller.region, "CLUSTER", cluster["ClusterName"],
                               f"Rebooting node {node['NodeId']}.")
        return {"Cluster": describe_cluster(cluster, now, self.host, self._port(cluster))}

    # -- tags ------------------------------------------------------------------------------------------------
    def tag_resource(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        with self.records.store.transaction() as tx:
            cluster = self._tagged(tx, caller, p["ResourceName"], now)
            tags = {t["Key"]: t.get("Value", "") for t in cluster["Tags"]}
            tags.update((t["Key"], t.get("Value", "")) for t in _check_tags(p["Tags"]))
            if len(tags) > MAX_TAGS:
                raise fault("TagQuotaPerResourceExceeded", f"A cluster may have at most {MAX_TAGS} tags.")
            cluster["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
            self.records.put(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"], cluster)
        return {"Tags": cluster["Tags"]}

    def untag_resource(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        with self.records.store.transaction() as tx:
            cluster = self._tagged(tx, caller, p["ResourceName"], now)
            have = {t["Key"] for t in cluster["Tags"]}
            for key in p["TagKeys"]:
                if key not in have:
                    raise fault("TagNotFoundFault", f"Tag {key} not found.")
            gone = set(p["TagKeys"])
            cluster["Tags"] = [t for t in cluster["Tags"] if t["Key"] not in gone]
            self.records.put(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"], cluster)
        return {"Tags": cluster["Tags"]}

    def list_tags(self, caller: Caller, p: dict) -> dict:
        with self.records.store.snapshot() as r:
            cluster = self._tagged(r, caller, p["ResourceName"], self.clock())
        return {"Tags": cluster["Tags"]}

    # -- events ----------------------------------------------------------------------------------------------
    def describe_events(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        size = page_size(p)
        end = timestamp(p["EndTime"], "EndTime") if "EndTime" in p else now
        if "StartTime" in p:
            start = timestamp(p["StartTime"], "StartTime")
        elif "Duration" in p:
            if p["Duration"] < 0:
                raise invalid("Duration must not be negative.")
            start = end - p["Duration"] * 60.0
        else:
            start = end - 86400.0  # DAX's default: the last 24 hours
        start = max(start, now - EVENT_RETENTION_SECONDS)
        with self.records.store.snapshot() as r:
            events = self.records.events(r, caller.account, caller.region, start, end + 1e-6)
        if "SourceName" in p:
            events = [e for e in events if e["SourceName"] == p["SourceName"].lower()]
        if "SourceType" in p:
            events = [e for e in events if e["SourceType"] == p["SourceType"]]
        skip = 0
        token = p.get("NextToken")
        if token is not None:
            if not token.isascii() or not token.isdigit() or len(token) > 9:
                raise invalid("Invalid NextToken.")
            skip = int(token)
        out: dict = {"Events": events[skip:skip + size]}
        if len(events) > skip + size:
            out["NextToken"] = str(skip + size)
        return out

    def _port(self, cluster: dict) -> int:
        return self.records.port_for(cluster["Encryption"]) or cluster["Port"]

    # -- shared lookups --------------------------------------------------------------------------------------
    def _live(self, cluster: dict | None, now: float) -> dict | None:
        """The cluster, or None when it is gone (its deletion finished)."""
        if cluster is None:
            return None
        until = cluster.get("DeletingUntil")
        return None if until is not None and until <= now else cluster

    def _cluster(self, r, caller: Caller, name: str, now: float, *, deleting_ok: bool = True,
                 available: bool = False) -> dict:
        cluster = self._live(self.records.get(r, CLUSTER, caller.account, caller.region, name.lower()), now)
        if cluster is None:
            raise fault("ClusterNotFoundFault", "Cluster not found.")  # DAX's text
        status = cluster_status(cluster, now)
        if (status == "deleting" and not deleting_ok) or (available and status != "available"):
            raise fault("InvalidClusterStateFault",
                         f"Cluster {cluster['ClusterName']} is {status}: it must be available for this request.")
        return cluster

    def _tagged(self, r, caller: Caller, arn: str, now: float) -> dict:
        m = re.fullmatch(r"arn:aws:dax:([a-z0-9-]+):([0-9]{12}):cache/([A-Za-z0-9-]+)", arn)
        if m is None:
            raise fault("InvalidARNFault", f"Invalid ARN: {arn}")
        if (m.group(1), m.group(2)) != (caller.region, caller.account):
            raise fault("ClusterNotFoundFault", "Cluster not found.")  # another account's: as absent
        return self._cluster(r, caller, m.group(3), now, deleting_ok=False)

def _check_tags(tags: list[dict]) -> list[dict]:
    out = []
    for tag in tags:
        key, value = tag.get("Key"), tag.get("Value", "")
        if not key or len(key) > 128:
            raise invalid("Tag keys must be 1 to 128 characters long.")
        if key.lower().startswith("aws:"):
            raise invalid("Tag keys starting with 'aws:' are reserved for AWS use.")
        if value is not None and len(value) > 256:
            raise invalid("Tag values must be at most 256 characters long.")
        out.append({"Key": key, "Value": value or ""})
    if len({t["Key"] for t in out}) > MAX_TAGS:
        raise fault("TagQuotaPerResourceExceeded", f"A cluster may have at most {MAX_TAGS} tags.")
    return out


def _letters():
    """Node id suffixes: a..z, then aa, ab, ..."""
    yield from string.ascii_lowercase
    for a in string.ascii_lowercase:
        for b in string.ascii_lowercase:
            yield a + b


def _letter(i: int) -> str:
    for n, letter in enumerate(_letters()):
        if n == i:
            return letter
    raise ValueError(i)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


#: botocore's dax/2017-04-19 operations, every one served
OPERATIONS = (
    "CreateCluster", "CreateParameterGroup", "CreateSubnetGroup", "DecreaseReplicationFactor", "DeleteCluster",
    "DeleteParameterGroup", "DeleteSubnetGroup", "DescribeClusters", "DescribeDefaultParameters",
    "DescribeEvents", "DescribeParameterGroups", "DescribeParameters", "DescribeSubnetGroups",
    "IncreaseReplicationFactor", "ListTags", "RebootNode", "TagResource", "UntagResource", "UpdateCluster",
    "UpdateParameterGroup", "UpdateSubnetGroup",
)
#: operations that change nothing (CloudTrail's readOnly)
READ_ONLY = frozenset(n for n in OPERATIONS if n.startswith(("Describe", "List")))
