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

import datetime as _dt
import re
import string
import time
from collections.abc import Callable

from dynavault.caller import Caller
from dynavault.config import Settings
from dynavault.errors import AWSError

from .clusters import (
    CLUSTER,
    DEFAULT_PARAMETER_GROUP,
    DEFAULT_SUBNET_GROUP,
    EVENT_RETENTION_SECONDS,
    PARAMETER_GROUP,
    PARAMETERS,
    QUERY_TTL,
    RECORD_TTL,
    SUBNET_GROUP,
    ClusterRecords,
    advertised_host,
    cluster_status,
    describe_cluster,
    group_shape,
    parameter_values,
    parameters_shape,
    subnet_shape,
)

Handler = Callable[[Caller, dict], dict]

#: DAX's quotas (per account and region, except nodes and tags)
MAX_NODES = 11
MAX_TAGS = 50
MAX_PARAMETER_GROUPS = 20
MAX_SUBNET_GROUPS = 50
MAX_SUBNETS = 20
_NAME_RE = re.compile(r"[a-z][a-z0-9-]*")
_NODE_TYPE_RE = re.compile(r"dax\.(?:t2\.(?:small|medium)|t3\.(?:small|medium)"
                           r"|r[345]\.(?:large|xlarge|2xlarge|4xlarge|8xlarge|12xlarge|16xlarge|24xlarge))")
_SUBNET_RE = re.compile(r"subnet-[0-9a-f]{1,32}")
_DEFAULT_WINDOW = "sun:05:00-sun:06:00"


#: DAX's two generic exceptions come from its front end (Coral), not from its own model: they carry Coral's
#: namespace in ``__type`` (the faults carry DAX's, ``elmo.admin#``, the front's error prefix)
_CORAL = "com.amazon.coral.service#"
_CORAL_CODES = frozenset({"InvalidParameterValueException", "InvalidParameterCombinationException"})


def _fault(code: str, message: str) -> AWSError:
    return AWSError(code, message, 400, type_prefix=_CORAL if code in _CORAL_CODES else None)


def _invalid(message: str) -> AWSError:
    return _fault("InvalidParameterValueException", message)


def _check_identifier(name: str, what: str, max_len: int) -> str:
    """DAX identifiers: 1..max_len letters, digits and hyphens, a letter first, no trailing or double hyphen;
    stored lowercase."""
    low = name.lower()
    if not (_NAME_RE.fullmatch(low) and len(low) <= max_len and not low.endswith("-") and "--" not in low):
        # DAX's text (for clusters; the same rule words parameter and subnet group names)
        raise _invalid(f"{what} specified is not a valid identifier. Identifiers must begin with a letter; must "
                       "contain only ASCII letters, digits, and hyphens; and must not end with a hyphen or "
                       "contain two consecutive hyphens.")
    return low


def _check_arn(arn: str) -> None:
    # DAX's texts (the ARN parser's, recorded by moto)
    if not arn.startswith("arn:"):
        raise _invalid(f"ARNs must start with 'arn:': {arn}")
    parts = arn.split(":")
    for n, message in ((3, "Second colon partition not found"), (4, "Third colon vendor not found"),
                       (5, "Fourth colon (region/namespace delimiter) not found"),
                       (6, "Fifth colon (namespace/relative-id delimiter) not found")):
        if len(parts) < n:
            raise _invalid(f"{message}: {arn}")


def _page_size(params: dict) -> int:
    n = params.get("MaxResults")
    if n is None:
        return 100
    if not 20 <= n <= 100:
        raise _invalid("The value for MaxResults must be between 20 and 100.")  # DAX's documented rule
    return n


def _page(items: list[dict], key: str, params: dict, out_key: str) -> dict:
    """One page of ``items`` (sorted by ``key``), resuming after the NextToken (the last key returned)."""
    size = _page_size(params)
    token = params.get("NextToken")
    if token is not None:
        items = [i for i in items if i[key] > token]
    out: dict = {out_key: items[:size]}
    if len(items) > size:
        out["NextToken"] = items[size - 1][key]
    return out


def _timestamp(value: object, member: str) -> float:
    """A request timestamp (epoch seconds or ISO 8601, as the model check let through), as epoch seconds."""
    try:
        ts = float(value) if isinstance(value, int | float) else float(str(value))
    except ValueError:
        ts = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    if not -1e11 < ts < 1e11:  # beyond year 5000 either way (or not a number): no event is there
        raise _invalid(f"{member} is out of range.")
    return ts


class ControlPlane:
    """The 21 operations of botocore's ``dax`` model over ``ClusterRecords``."""

    def __init__(self, records: ClusterRecords, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.records = records
        self.settings = settings
        self.clock = clock
        self.host = advertised_host(settings.host)

    def __repr__(self) -> str:
        return f"ControlPlane({self.records!r})"

    def operations(self) -> dict[str, Handler]:
        return {name: getattr(self, _snake(name)) for name in OPERATIONS}

    # -- clusters --------------------------------------------------------------------------------------------
    def create_cluster(self, caller: Caller, p: dict) -> dict:
        name = _check_identifier(p["ClusterName"], "Cluster ID", 20)
        _check_arn(p["IamRoleArn"])
        node_type = p["NodeType"]
        if not _NODE_TYPE_RE.fullmatch(node_type):
            raise _invalid(f"Invalid node type: {node_type}")
        rf = p["ReplicationFactor"]
        if rf < 1:
            raise _invalid("ReplicationFactor must be at least 1.")
        if rf > MAX_NODES:
            raise _fault("NodeQuotaForClusterExceededFault",
                         f"A cluster may have at most {MAX_NODES} nodes (ReplicationFactor {rf}).")
        zones = p.get("AvailabilityZones") or []
        if zones and len(zones) != rf:
            raise _fault("InvalidParameterCombinationException",
                         "The number of AvailabilityZones must equal the ReplicationFactor.")
        encryption = p.get("ClusterEndpointEncryptionType", "NONE")
        port = self.records.port_for(encryption)
        if port is None:
            flag, scheme = ("--dax-tls-port", "daxs") if encryption == "TLS" else ("--dax-port", "dax")
            raise _invalid(f"This server has no {scheme}:// listener for a cluster with ClusterEndpointEncryptionType "
                           f"{encryption}: start it with {flag} PORT.")
        tags = _check_tags(p.get("Tags") or [])
        group = p.get("ParameterGroupName", DEFAULT_PARAMETER_GROUP)
        subnets = p.get("SubnetGroupName", DEFAULT_SUBNET_GROUP)
        now = self.clock()
        ready = now + self.settings.dax_cluster_seconds
        with self.records.store.transaction() as tx:
            if self._live(self.records.get(tx, CLUSTER, caller.account, caller.region, name), now) is not None:
                raise _fault("ClusterAlreadyExistsFault", f"Cluster {name} already exists.")
            self._parameter_group(tx, caller, group)
            if subnets != DEFAULT_SUBNET_GROUP:
                self._subnet_group(tx, caller, subnets.lower())
            nodes = [{"NodeId": f"{name}-{_letter(i)}", "NodeCreateTime": now, "ReadyAt": ready,
                      "AvailabilityZone": zones[i] if zones else f"{caller.region}a"} for i in range(rf)]
            cluster = {
                "Account": caller.account, "Region": caller.region, "ClusterName": name,
                "ClusterArn": f"arn:aws:dax:{caller.region}:{caller.account}:cache/{name}",
                "NodeType": node_type, "Nodes": nodes, "CreatingUntil": ready, "IamRoleArn": p["IamRoleArn"],
                "ParameterGroupName": group, "SubnetGroup": subnets.lower(),
                "SecurityGroupIds": p.get("SecurityGroupIds") or [],
                "PreferredMaintenanceWindow": p.get("PreferredMaintenanceWindow", _DEFAULT_WINDOW),
                "SSEEnabled": bool((p.get("SSESpecification") or {}).get("Enabled")),
                "Encryption": encryption, "Port": port, "Tags": tags,
                "NetworkType": p.get("NetworkType", "ipv4"),
            }
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
                    raise _fault("ClusterNotFoundFault", f"Cluster {n} not found.")  # DAX's text
            found = [c for c in found if c["ClusterName"] in wanted]
        out = _page(found, "ClusterName", p, "Clusters")
        out["Clusters"] = [describe_cluster(c, now, self.host, self._port(c)) for c in out["Clusters"]]
        return out

    def delete_cluster(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        with self.records.store.transaction() as tx:
            cluster = self._cluster(tx, caller, p["ClusterName"], now)
            if cluster.get("DeletingUntil") is not None:
                raise _fault("InvalidClusterStateFault", f"Cluster {cluster['ClusterName']} is already being deleted.")
            cluster["DeletingUntil"] = now + self.settings.dax_cluster_seconds
            if self.settings.dax_cluster_seconds > 0:
                self.records.put(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"], cluster)
            else:
                self.records.delete(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"])
            self.records.event(tx, caller.account, caller.region, "CLUSTER", cluster["ClusterName"],
                               "Cluster deleted.")  # DAX's text
        self.records.changed()
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
                raise _invalid(f"NewReplicationFactor {new} must be greater than the current replication factor "
                               f"{len(nodes)}.")
            if new > MAX_NODES:
                raise _fault("NodeQuotaForClusterExceededFault",
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
                raise _invalid(f"NewReplicationFactor {new} must be at least 1 and less than the current "
                               f"replication factor {len(nodes)}.")
            remove = p.get("NodeIdsToRemove")
            if remove:
                ids = {n["NodeId"] for n in nodes}
                for node_id in remove:
                    if node_id not in ids:
                        raise _fault("NodeNotFoundFault", f"Node {node_id} not found.")
                if len(set(remove)) != len(nodes) - new:
                    raise _fault("InvalidParameterCombinationException",
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
                raise _fault("NodeNotFoundFault", f"Node {p['NodeId']} not found.")
            node["RebootUntil"] = now + self.settings.dax_cluster_seconds
            self.records.put(tx, CLUSTER, caller.account, caller.region, cluster["ClusterName"], cluster)
            self.records.event(tx, caller.account, caller.region, "CLUSTER", cluster["ClusterName"],
                               f"Rebooting node {node['NodeId']}.")
        return {"Cluster": describe_cluster(cluster, now, self.host, self._port(cluster))}

    # -- parameter groups ------------------------------------------------------------------------------------
    def create_parameter_group(self, caller: Caller, p: dict) -> dict:
        name = _check_identifier(p["ParameterGroupName"], "Parameter group name", 255)
        group = {"ParameterGroupName": name, "Parameters": {}}
        if "Description" in p:
            group["Description"] = p["Description"]
        with self.records.store.transaction() as tx:
            existing = self.records.list(tx, PARAMETER_GROUP, caller.account, caller.region)
            if any(g["ParameterGroupName"] == name for g in existing):
                raise _fault("ParameterGroupAlreadyExistsFault", f"Parameter group {name} already exists.")
            if len(existing) >= MAX_PARAMETER_GROUPS:
                raise _fault("ParameterGroupQuotaExceededFault",
                             f"An account may have at most {MAX_PARAMETER_GROUPS} parameter groups per region.")
            self.records.put(tx, PARAMETER_GROUP, caller.account, caller.region, name, group)
        return {"ParameterGroup": group_shape(group)}

    def describe_parameter_groups(self, caller: Caller, p: dict) -> dict:
        with self.records.store.snapshot() as r:
            groups = [{"ParameterGroupName": DEFAULT_PARAMETER_GROUP, "Description": " "},
                      *self.records.list(r, PARAMETER_GROUP, caller.account, caller.region)]
        names = p.get("ParameterGroupNames")
        if names:
            have = {g["ParameterGroupName"] for g in groups}
            for n in names:
                if n not in have and n.lower() not in have:
                    raise _fault("ParameterGroupNotFoundFault", f"Parameter group {n} not found.")
            wanted = set(names) | {n.lower() for n in names}
            groups = [g for g in groups if g["ParameterGroupName"] in wanted]
        groups.sort(key=lambda g: g["ParameterGroupName"])
        out = _page(groups, "ParameterGroupName", p, "ParameterGroups")
        out["ParameterGroups"] = [group_shape(g) for g in out["ParameterGroups"]]
        return out

    def update_parameter_group(self, caller: Caller, p: dict) -> dict:
        values: dict[str, str] = {}
        pairs = p["ParameterNameValues"]
        if not pairs:
            raise _invalid("ParameterNameValues must name at least one parameter.")
        if len(pairs) > 20:
            raise _invalid("At most 20 parameters can be modified in one request.")
        for pair in pairs:
            pname, value = pair.get("ParameterName"), pair.get("ParameterValue")
            if pname not in PARAMETERS:
                raise _invalid(f"Unknown parameter: {pname}. Supported parameters: {QUERY_TTL}, {RECORD_TTL}.")
            if value is None or not value.isascii() or not value.isdigit() or len(value) > 18:
                raise _invalid(f"Invalid value {value} for parameter {pname}: allowed values are 0-.")
            values[pname] = str(int(value))
        with self.records.store.transaction() as tx:
            group = self._parameter_group(tx, caller, p["ParameterGroupName"], changing=True)
            group.setdefault("Parameters", {}).update(values)
            self.records.put(tx, PARAMETER_GROUP, caller.account, caller.region, group["ParameterGroupName"], group)
            for cluster in self.records.list(tx, CLUSTER, caller.account, caller.region):
                if cluster.get("ParameterGroupName") == group["ParameterGroupName"]:
                    self.records.event(tx, caller.account, caller.region, "CLUSTER", cluster["ClusterName"],
                                       f"Parameter group {group['ParameterGroupName']} applied.")
        self.records.changed()
        return {"ParameterGroup": group_shape(group)}

    def delete_parameter_group(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        with self.records.store.transaction() as tx:
            group = self._parameter_group(tx, caller, p["ParameterGroupName"], changing=True)
            name = group["ParameterGroupName"]
            users = [c["ClusterName"] for c in self.records.list(tx, CLUSTER, caller.account, caller.region)
                     if c.get("ParameterGroupName") == name and self._live(c, now) is not None]
            if users:
                raise _fault("InvalidParameterGroupStateFault",
                             f"Parameter group {name} is in use by cluster(s): {', '.join(users)}.")
            self.records.delete(tx, PARAMETER_GROUP, caller.account, caller.region, name)
        return {"DeletionMessage": f"Parameter group {name} has been deleted."}  # DAX's text

    def describe_parameters(self, caller: Caller, p: dict) -> dict:
        with self.records.store.snapshot() as r:
            group = self._parameter_group(r, caller, p["ParameterGroupName"])
        params = parameters_shape(parameter_values(group if group["ParameterGroupName"] != DEFAULT_PARAMETER_GROUP
                                              else None))
        source = p.get("Source")
        if source is not None:
            params = [x for x in params if x["Source"] == source]
        return _page(params, "ParameterName", p, "Parameters")

    def describe_default_parameters(self, caller: Caller, p: dict) -> dict:
        return _page(parameters_shape(parameter_values(None)), "ParameterName", p, "Parameters")

    # -- subnet groups ---------------------------------------------------------------------------------------
    def create_subnet_group(self, caller: Caller, p: dict) -> dict:
        name = _check_identifier(p["SubnetGroupName"], "Subnet group name", 255)
        if name == DEFAULT_SUBNET_GROUP:
            raise _fault("SubnetGroupAlreadyExistsFault", f"Subnet group {name} already exists.")
        group = {"SubnetGroupName": name, "SubnetIds": _check_subnets(p["SubnetIds"])}
        if "Description" in p:
            group["Description"] = p["Description"]
        with self.records.store.transaction() as tx:
            existing = self.records.list(tx, SUBNET_GROUP, caller.account, caller.region)
            if any(g["SubnetGroupName"] == name for g in existing):
                raise _fault("SubnetGroupAlreadyExistsFault", f"Subnet group {name} already exists.")
            if len(existing) >= MAX_SUBNET_GROUPS:
                raise _fault("SubnetGroupQuotaExceededFault",
                             f"An account may have at most {MAX_SUBNET_GROUPS} subnet groups per region.")
            self.records.put(tx, SUBNET_GROUP, caller.account, caller.region, name, group)
        return {"SubnetGroup": subnet_shape(group, caller.account, caller.region)}

    def describe_subnet_groups(self, caller: Caller, p: dict) -> dict:
        with self.records.store.snapshot() as r:
            groups = self.records.list(r, SUBNET_GROUP, caller.account, caller.region)
        names = p.get("SubnetGroupNames")
        if names:
            have = {g["SubnetGroupName"] for g in groups}
            for n in names:
                if n.lower() not in have:
                    raise _fault("SubnetGroupNotFoundFault", f"Subnet group {n} not found.")
            wanted = {n.lower() for n in names}
            groups = [g for g in groups if g["SubnetGroupName"] in wanted]
        out = _page(groups, "SubnetGroupName", p, "SubnetGroups")
        out["SubnetGroups"] = [subnet_shape(g, caller.account, caller.region) for g in out["SubnetGroups"]]
        return out

    def update_subnet_group(self, caller: Caller, p: dict) -> dict:
        with self.records.store.transaction() as tx:
            group = self._subnet_group(tx, caller, p["SubnetGroupName"].lower())
            if "SubnetIds" in p:
                group["SubnetIds"] = _check_subnets(p["SubnetIds"])
            if "Description" in p:
                group["Description"] = p["Description"]
            self.records.put(tx, SUBNET_GROUP, caller.account, caller.region, group["SubnetGroupName"], group)
        return {"SubnetGroup": subnet_shape(group, caller.account, caller.region)}

    def delete_subnet_group(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        with self.records.store.transaction() as tx:
            group = self._subnet_group(tx, caller, p["SubnetGroupName"].lower())
            name = group["SubnetGroupName"]
            users = [c["ClusterName"] for c in self.records.list(tx, CLUSTER, caller.account, caller.region)
                     if c.get("SubnetGroup") == name and self._live(c, now) is not None]
            if users:
                raise _fault("SubnetGroupInUseFault", f"Subnet group {name} is in use by cluster(s): {', '.join(users)}.")
            self.records.delete(tx, SUBNET_GROUP, caller.account, caller.region, name)
        return {"DeletionMessage": f"Subnet group {name} has been deleted."}

    # -- tags ------------------------------------------------------------------------------------------------
    def tag_resource(self, caller: Caller, p: dict) -> dict:
        now = self.clock()
        with self.records.store.transaction() as tx:
            cluster = self._tagged(tx, caller, p["ResourceName"], now)
            tags = {t["Key"]: t.get("Value", "") for t in cluster["Tags"]}
            tags.update((t["Key"], t.get("Value", "")) for t in _check_tags(p["Tags"]))
            if len(tags) > MAX_TAGS:
                raise _fault("TagQuotaPerResourceExceeded", f"A cluster may have at most {MAX_TAGS} tags.")
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
                    raise _fault("TagNotFoundFault", f"Tag {key} not found.")
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
        size = _page_size(p)
        end = _timestamp(p["EndTime"], "EndTime") if "EndTime" in p else now
        if "StartTime" in p:
            start = _timestamp(p["StartTime"], "StartTime")
        elif "Duration" in p:
            if p["Duration"] < 0:
                raise _invalid("Duration must not be negative.")
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
                raise _invalid("Invalid NextToken.")
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
            raise _fault("ClusterNotFoundFault", "Cluster not found.")  # DAX's text
        status = cluster_status(cluster, now)
        if (status == "deleting" and not deleting_ok) or (available and status != "available"):
            raise _fault("InvalidClusterStateFault",
                         f"Cluster {cluster['ClusterName']} is {status}: it must be available for this request.")
        return cluster

    def _tagged(self, r, caller: Caller, arn: str, now: float) -> dict:
        m = re.fullmatch(r"arn:aws:dax:([a-z0-9-]+):([0-9]{12}):cache/([A-Za-z0-9-]+)", arn)
        if m is None:
            raise _fault("InvalidARNFault", f"Invalid ARN: {arn}")
        if (m.group(1), m.group(2)) != (caller.region, caller.account):
            raise _fault("ClusterNotFoundFault", "Cluster not found.")  # another account's: as absent
        return self._cluster(r, caller, m.group(3), now, deleting_ok=False)

    def _parameter_group(self, r, caller: Caller, name: str, *, changing: bool = False) -> dict:
        if name == DEFAULT_PARAMETER_GROUP:
            if changing:
                raise _fault("InvalidParameterGroupStateFault",
                             f"The default parameter group {name} cannot be modified or deleted.")
            return {"ParameterGroupName": name, "Description": " ", "Parameters": {}}
        group = self.records.get(r, PARAMETER_GROUP, caller.account, caller.region, name.lower())
        if group is None:
            raise _fault("ParameterGroupNotFoundFault", f"Parameter group {name} not found.")
        return group

    def _subnet_group(self, r, caller: Caller, name: str) -> dict:
        group = self.records.get(r, SUBNET_GROUP, caller.account, caller.region, name)
        if group is None:
            raise _fault("SubnetGroupNotFoundFault", f"Subnet group {name} not found.")
        return group

def _check_tags(tags: list[dict]) -> list[dict]:
    out = []
    for tag in tags:
        key, value = tag.get("Key"), tag.get("Value", "")
        if not key or len(key) > 128:
            raise _invalid("Tag keys must be 1 to 128 characters long.")
        if key.lower().startswith("aws:"):
            raise _invalid("Tag keys starting with 'aws:' are reserved for AWS use.")
        if value is not None and len(value) > 256:
            raise _invalid("Tag values must be at most 256 characters long.")
        out.append({"Key": key, "Value": value or ""})
    if len({t["Key"] for t in out}) > MAX_TAGS:
        raise _fault("TagQuotaPerResourceExceeded", f"A cluster may have at most {MAX_TAGS} tags.")
    return out


def _check_subnets(ids: list[str]) -> list[str]:
    if not ids:
        raise _fault("InvalidSubnet", "A subnet group needs at least one subnet.")
    if len(ids) > MAX_SUBNETS:
        raise _fault("SubnetQuotaExceededFault", f"A subnet group may have at most {MAX_SUBNETS} subnets.")
    for subnet in ids:
        if not _SUBNET_RE.fullmatch(subnet):
            raise _fault("InvalidSubnet", f"Invalid subnet: {subnet}")
    return list(dict.fromkeys(ids))


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
