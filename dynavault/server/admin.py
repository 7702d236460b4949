"""The admin front (``X-Amz-Target: DynavaultAdmin.<Op>``, JSON 1.0, signed as DynamoDB): test-suite helpers.

- ``Reset`` ``{"KeepKeys": true|false}`` (default true): deletes every table, backup (USER and SYSTEM) and
  stream of the caller's account and region (with ``--shared-db``: of the whole data set), and unless
  KeepKeys, the account's customer managed KMS keys of that region, at once (no deletion window); and the
  account's DAX clusters, parameter groups and subnet groups of that region, at once (no DELETING phase; the
  default groups are built in and stay). Deletion
  protection does not stop a reset: it is switched off first. Everything goes through the DynamoDB
  operations (UpdateTable, DeleteTable, ListBackups, DeleteBackup) as the caller, so the audit trail, grants
  and stream data go as they go for those calls. The account's export and import descriptions go too
  (ListExports / ListImports are empty after); the files in --bucket-dir stay, as S3 objects would.
- ``PutFault`` / ``ListFaults`` / ``DeleteFault``: the fault registry (faults.py).

Signed like any request: an unsigned or badly signed one is refused by the app before it gets here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dynavault.caller import Caller
from dynavault.dynamodb.exports import records as transfer_records
from dynavault.dynamodb.layout import EXPORT_PREFIX, IMPORT_PREFIX
from dynavault.errors import AWSError

from .app import RouteTable
from .faults import FaultRegistry

log = logging.getLogger("dynavault.server")

ADMIN_PREFIX = "DynavaultAdmin"
_DDB = "DynamoDB_20120810"
#: errors that mean "already gone": a table or backup deleted meanwhile
_GONE = frozenset({"ResourceNotFoundException", "BackupNotFoundException", "TableNotFoundException"})


class Admin:
    def __init__(self, routes: RouteTable, *, db, kms, faults: FaultRegistry, shared_db: bool,
                 dax=None) -> None:
        self.routes = routes
        #: the DAX control plane's records (dax/clusters.py ClusterRecords), or None
        self.dax = dax
        self.db = db
        #: the in-process KeyService, or None when keys are kept by a remote KMS (--kms-endpoint)
        self.kms = kms
        self.faults = faults
        self.shared_db = shared_db

    def operations(self) -> dict[str, Callable[[Caller, dict], dict]]:
        return {"Reset": self.reset, "PutFault": self.put_fault, "ListFaults": self.list_faults,
                "DeleteFault": self.delete_fault}

    # -- Reset ---------------------------------------------------------------------------------------------
    def _op(self, name: str) -> Callable[[Caller, dict], dict]:
        route = self.routes.get(f"{_DDB}.{name}")
        if route is None:
            raise AWSError("UnknownOperationException", f"{name} is not served here")
        return route.handler

    def reset(self, caller: Caller, params: dict) -> dict:
        unknown = sorted(set(params) - {"KeepKeys"})
        if unknown:
            raise AWSError("ValidationException", f"Unknown member(s): {', '.join(unknown)} (Reset takes KeepKeys)")
        keep = params.get("KeepKeys", True)
        if not isinstance(keep, bool):
            raise AWSError("ValidationException", "KeepKeys must be true or false")
        if not keep and self.kms is None:
            raise AWSError("ValidationException", "KeepKeys false needs this server's own key service: its keys are "
                                                  "kept by the KMS at --kms-endpoint")
        started = time.monotonic()
        scopes = {(caller.account, caller.region)}
        if self.shared_db:
            # every request is in one account and region; tables seeded by --init for others are included
            scopes |= {(m.account, m.region) for m in self.db.catalog.all()}
        counts = {"tables": 0, "backups": 0, "keys": 0, "transfers": 0, "dax_clusters": 0}
        busy: list[str] = []
        for account, region in sorted(scopes):
            who = caller if (account, region) == (caller.account, caller.region) else _root(account, region, caller)
            self._reset_scope(who, keep, counts, busy)
        log.info("reset of account %s region %s%s: %d table(s), %d backup(s), %d export/import record(s), "
                 "%d KMS key(s), %d DAX cluster(s) deleted in %.3f s", caller.account, caller.region,
                 " (shared db: every account and region)" if self.shared_db else "", counts["tables"],
                 counts["backups"], counts["transfers"], counts["keys"], counts["dax_clusters"],
                 time.monotonic() - started)
        if busy:
            raise AWSError("ResourceInUseException", "Reset incomplete: still in use (retry the reset): "
                           + ", ".join(sorted(busy)[:20]))
        return {}

    def _reset_scope(self, who: Caller, keep: bool, counts: dict[str, int], busy: list[str]) -> None:
        update, delete = self._op("UpdateTable"), self._op("DeleteTable")
        for meta in self.db.catalog.list(who.account, who.region):
            try:
                if meta.deletion_protection:
                    update(who, {"TableName": meta.name, "DeletionProtectionEnabled": False})
                delete(who, {"TableName": meta.name})
                counts["tables"] += 1
            except AWSError as err:
                if err.code not in _GONE:
                    busy.append(f"table {meta.name} ({err.code})")
        # after the tables: deleting a table with PITR keeps a SYSTEM backup of it
        list_backups, delete_backup = self._op("ListBackups"), self._op("DeleteBackup")
        arns: list[str] = []
        page: dict = {"BackupType": "ALL"}
        while True:
            out = list_backups(who, page)
            arns += [b["BackupArn"] for b in out.get("BackupSummaries", [])]
            if "LastEvaluatedBackupArn" not in out:
                break
            page = {"BackupType": "ALL", "ExclusiveStartBackupArn": out["LastEvaluatedBackupArn"]}
        for arn in arns:
            try:
                delete_backup(who, {"BackupArn": arn})
                counts["backups"] += 1
            except AWSError as err:
                if err.code not in _GONE:
                    busy.append(f"backup {arn} ({err.code})")
        counts["transfers"] += _forget_transfers(self.db, who)
        if not keep:
            counts["keys"] += self.kms.delete_customer_keys_now(who.account, who.region)
        if self.dax is not None:
            counts["dax_clusters"] += self.dax.reset(who.account, who.region)

    # -- faults --------------------------------------------------------------------------------------------
    def put_fault(self, caller: Caller, params: dict) -> dict:
        fault = self.faults.put(params, (caller.account, caller.region))
        if fault.kms_unavailable and self.db is not None:
            # Cached table keys would hide the outage until their refresh: the next use of the key asks KMS.
            for meta in self.db.catalog.list(caller.account, caller.region):
                if fault.table in ("*", meta.name):
                    self.db.keys.forget_table(meta.id_bytes)
        return {"FaultId": fault.fault_id}

    def list_faults(self, caller: Caller, params: dict) -> dict:
        return {"Faults": self.faults.list((caller.account, caller.region))}

    def delete_fault(self, caller: Caller, params: dict) -> dict:
        fault_id = params.get("FaultId")
        if not isinstance(fault_id, str) or not fault_id:
            raise AWSError("ValidationException", "FaultId is required (a string from PutFault or ListFaults)")
        self.faults.delete(fault_id, (caller.account, caller.region))
        return {}


def _forget_transfers(db, who: Caller) -> int:
    """The account's export and import descriptions (ListExports / ListImports); the files they wrote in
    --bucket-dir stay, as S3 objects outlive a table and its exports."""
    return transfer_records.forget_account(db.items.kv, (EXPORT_PREFIX, IMPORT_PREFIX), who.account, who.region)


def _root(account: str, region: str, caller: Caller) -> Caller:
    """The account's root principal, for a shared-db reset of what --init made in other accounts."""
    return Caller(account=account, region=region, principal_arn=f"arn:aws:iam::{account}:root",
                  access_key=caller.access_key, connection_id=caller.connection_id, source_ip=caller.source_ip,
                  user_agent=caller.user_agent, endpoint=caller.endpoint)
