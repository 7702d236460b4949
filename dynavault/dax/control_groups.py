"""The DAX control plane's parameter groups and subnet groups (records of clusters.py)."""

from __future__ import annotations

from collections.abc import Callable

from dynavault.caller import Caller

from .clusters import (
    CLUSTER,
    DEFAULT_PARAMETER_GROUP,
    DEFAULT_SUBNET_GROUP,
    PARAMETER_GROUP,
    PARAMETERS,
    QUERY_TTL,
    RECORD_TTL,
    SUBNET_GROUP,
    ClusterRecords,
    group_shape,
    parameter_values,
    parameters_shape,
    subnet_shape,
)
from .control_common import (
    MAX_PARAMETER_GROUPS,
    MAX_SUBNET_GROUPS,
    MAX_SUBNETS,
    SUBNET_RE,
    check_identifier,
    fault,
    invalid,
    page,
)


class GroupOperations:
    """Parameter and subnet group operations, mixed into ControlPlane (which supplies ``_live``)."""

    records: ClusterRecords
    clock: Callable[[], float]
    _live: Callable[[dict | None, float], dict | None]

    def _add_group(self, caller: Caller, kind: str, label: str, name: str, group: dict, most: int) -> None:
        """Store a new parameter or subnet group: refused if the name is taken or the region holds ``most``."""
        with self.records.store.transaction() as tx:
            existing = self.records.list(tx, kind, caller.account, caller.region)
            if any(g[f"{label}GroupName"] == name for g in existing):
                raise fault(f"{label}GroupAlreadyExistsFault", f"{label} group {name} already exists.")
            if len(existing) >= most:
                raise fault(f"{label}GroupQuotaExceededFault",
                            f"An account may have at most {most} {label.lower()} groups per region.")
            self.records.put(tx, kind, caller.account, caller.region, name, group)

    # -- parameter groups ------------------------------------------------------------------------------------
    def create_parameter_group(self, caller: Caller, p: dict) -> dict:
        name = check_identifier(p["ParameterGroupName"], "Parameter group name", 255)
        group = {"ParameterGroupName": name, "Parameters": {}}
        if "Description" in p:
            group["Description"] = p["Description"]
        self._add_group(caller, PARAMETER_GROUP, "Parameter", name, group, MAX_PARAMETER_GROUPS)
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
                    raise fault("ParameterGroupNotFoundFault", f"Parameter group {n} not found.")
            wanted = set(names) | {n.lower() for n in names}
            groups = [g for g in groups if g["ParameterGroupName"] in wanted]
        groups.sort(key=lambda g: g["ParameterGroupName"])
        out = page(groups, "ParameterGroupName", p, "ParameterGroups")
        out["ParameterGroups"] = [group_shape(g) for g in out["ParameterGroups"]]
        return out

    def update_parameter_group(self, caller: Caller, p: dict) -> dict:
        values: dict[str, str] = {}
        pairs = p["ParameterNameValues"]
        if not pairs:
            raise invalid("ParameterNameValues must name at least one parameter.")
        if len(pairs) > 20:
            raise invalid("At most 20 parameters can be modified in one request.")
        for pair in pairs:
            pname, value = pair.get("ParameterName"), pair.get("ParameterValue")
            if pname not in PARAMETERS:
                raise invalid(f"Unknown parameter: {pname}. Supported parameters: {QUERY_TTL}, {RECORD_TTL}.")
            if value is None or not value.isascii() or not value.isdigit() or len(value) > 18:
                raise invalid(f"Invalid value {value} for parameter {pname}: allowed values are 0-.")
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
                raise fault("InvalidParameterGroupStateFault",
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
        return page(params, "ParameterName", p, "Parameters")

    def describe_default_parameters(self, caller: Caller, p: dict) -> dict:
        return page(parameters_shape(parameter_values(None)), "ParameterName", p, "Parameters")

    # -- subnet groups ---------------------------------------------------------------------------------------
    def create_subnet_group(self, caller: Caller, p: dict) -> dict:
        name = check_identifier(p["SubnetGroupName"], "Subnet group name", 255)
        if name == DEFAULT_SUBNET_GROUP:
            raise fault("SubnetGroupAlreadyExistsFault", f"Subnet group {name} already exists.")
        group = {"SubnetGroupName": name, "SubnetIds": _check_subnets(p["SubnetIds"])}
        if "Description" in p:
            group["Description"] = p["Description"]
        self._add_group(caller, SUBNET_GROUP, "Subnet", name, group, MAX_SUBNET_GROUPS)
        return {"SubnetGroup": subnet_shape(group, caller.account, caller.region)}

    def describe_subnet_groups(self, caller: Caller, p: dict) -> dict:
        with self.records.store.snapshot() as r:
            groups = self.records.list(r, SUBNET_GROUP, caller.account, caller.region)
        names = p.get("SubnetGroupNames")
        if names:
            have = {g["SubnetGroupName"] for g in groups}
            for n in names:
                if n.lower() not in have:
                    raise fault("SubnetGroupNotFoundFault", f"Subnet group {n} not found.")
            wanted = {n.lower() for n in names}
            groups = [g for g in groups if g["SubnetGroupName"] in wanted]
        out = page(groups, "SubnetGroupName", p, "SubnetGroups")
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
                raise fault("SubnetGroupInUseFault", f"Subnet group {name} is in use by cluster(s): {', '.join(users)}.")
            self.records.delete(tx, SUBNET_GROUP, caller.account, caller.region, name)
        return {"DeletionMessage": f"Subnet group {name} has been deleted."}

    def _parameter_group(self, r, caller: Caller, name: str, *, changing: bool = False) -> dict:
        if name == DEFAULT_PARAMETER_GROUP:
            if changing:
                raise fault("InvalidParameterGroupStateFault",
                             f"The default parameter group {name} cannot be modified or deleted.")
            return {"ParameterGroupName": name, "Description": " ", "Parameters": {}}
        group = self.records.get(r, PARAMETER_GROUP, caller.account, caller.region, name.lower())
        if group is None:
            raise fault("ParameterGroupNotFoundFault", f"Parameter group {name} not found.")
        return group

    def _subnet_group(self, r, caller: Caller, name: str) -> dict:
        group = self.records.get(r, SUBNET_GROUP, caller.account, caller.region, name)
        if group is None:
            raise fault("SubnetGroupNotFoundFault", f"Subnet group {name} not found.")
        return group


def _check_subnets(ids: list[str]) -> list[str]:
    if not ids:
        raise fault("InvalidSubnet", "A subnet group needs at least one subnet.")
    if len(ids) > MAX_SUBNETS:
        raise fault("SubnetQuotaExceededFault", f"A subnet group may have at most {MAX_SUBNETS} subnets.")
    for subnet in ids:
        if not SUBNET_RE.fullmatch(subnet):
            raise fault("InvalidSubnet", f"Invalid subnet: {subnet}")
    return list(dict.fromkeys(ids))
