"""The KMS-compatible key service (TrentService JSON 1.1 semantics), in-process: dispatch and audit.

Handlers take ``(caller, params)`` with params exactly as the wire carries them (blobs base64, timestamps
epoch seconds) and return the response dict; errors are AWSError with KMS's codes and texts. Every call,
success or failure, appends one CloudTrail-shaped event to the audit trail.

Where the rest lives: model.py (key records, constants), keyring.py (state, store, key material),
provision.py (DynamoDB's own keys), authz.py (resolution, policy + grant decisions), params.py (wire
parameters), ops_*.py (the operations, each module exporting one ``HANDLERS`` table).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Protocol

from dynavault.audit import events
from dynavault.audit.trail import AuditTrail
from dynavault.caller import Caller
from dynavault.config import Settings
from dynavault.errors import AWSError
from dynavault.kms import ops_aliases_tags, ops_crypto, ops_grants, ops_keys
from dynavault.kms.authz import Authorizer
from dynavault.kms.context import Handler, KmsContext
from dynavault.kms.keyring import KeyRing
from dynavault.kms.model import (
    AWS_OWNED_ACCOUNT,
    MANAGED_DYNAMODB_ALIAS,
    MANAGED_DYNAMODB_DESCRIPTION,
    READ_ONLY,
    READ_ONLY_PREFIXES,
    SECRET_PARAMS,
    CallInfo,
    KmsKey,
)
from dynavault.kms.provision import owned_key
from dynavault.kms.store import KeyStore
from dynavault.kms.trust import ensure_check_value, open_checked_root

__all__ = [
    "AWS_OWNED_ACCOUNT",
    "MANAGED_DYNAMODB_ALIAS",
    "MANAGED_DYNAMODB_DESCRIPTION",
    "OPERATIONS",
    "KeyService",
]

log = logging.getLogger("dynavault.kms")

EVENT_SOURCE = "kms.amazonaws.com"
KEY_RESOURCE = "AWS::KMS::Key"

#: every operation the key service serves, by wire name
OPERATIONS: Mapping[str, Handler] = MappingProxyType(
    {
        **ops_keys.HANDLERS,
        **ops_aliases_tags.HANDLERS,
        **ops_crypto.HANDLERS,
        **ops_grants.HANDLERS,
    }
)


class ChangeWatch(Protocol):
    """One shared change counter as this service sees it (``storage.signal.Watch``)."""

    def stale(self) -> bool: ...
    def seen(self) -> None: ...
    def changed_here(self) -> None: ...


class KeyService:
    def __init__(self, settings: Settings, trail: AuditTrail, clock: Callable[[], float] = time.time,
                 watch: ChangeWatch | None = None) -> None:
        self.settings = settings
        self.trail = trail
        self.clock = clock
        # before anything is written: a root that cannot open the stored material refuses the start
        self._root = open_checked_root(settings)
        try:
            self._store = KeyStore(None if settings.in_memory else settings.data_path("kms"))
            ensure_check_value(self._store, self._root)
            # Other processes over this data dir change keys too: a committed change is counted on a shared
            # counter (storage.signal, given by the runtime), and every process reloads its ring before its next
            # call (``_fresh``).
            self._watch = watch
            if watch is not None:
                self._store.on_commit = watch.changed_here
        except BaseException:
            self._root.close()
            raise
        self._ring = KeyRing(settings, clock, self._root, self._store)
        self._keys = self._ring.keys  # the same dict: tests and tools inspect it
        self._authz = Authorizer(self._ring)
        self._ctx = KmsContext(self._ring, self._authz)
        self._ops = {name: self._bind(name, handler) for name, handler in OPERATIONS.items()}

    def _fresh(self) -> None:
        if self._watch is not None and self._watch.stale():
            with self._ring.lock:
                if self._watch.stale():
                    self._watch.seen()
                    self._ring.reload()
                    self._authz.clear()

    def __repr__(self) -> str:
        return f"KeyService(keys={len(self._ring.keys)})"

    # -- public interface ----------------------------------------------------------------------------------

    def operations(self) -> dict[str, Callable[[Caller, dict], dict]]:
        return dict(self._ops)

    def invoke(self, caller: Caller, operation: str, params: dict) -> dict:
        op = self._ops.get(operation)
        if op is None:
            raise AWSError("UnknownOperationException", None)
        return op(caller, params)

    def owned_key_arn(self, region: str) -> str:
        """The AWS owned key (in AWS_OWNED_ACCOUNT) protecting tables that name no KMS key."""
        self._fresh()
        return owned_key(self._ring, region).arn

    def sweep(self) -> None:
        """Delete keys whose deletion window ended; perform due automatic rotations."""
        now = self.clock()
        ring = self._ring
        self._fresh()
        with ring.lock:
            for key in list(ring.keys.values()):
                if (
                    key.state == "PendingDeletion"
                    and key.deletion_date is not None
                    and key.deletion_date <= now
                ):
                    ring.delete_key_now(key)
                    self._authz.clear()
                    self._internal_event(key, "DeleteKey")
                elif (
                    key.state == "Enabled"
                    and key.rotation_enabled
                    and key.next_rotation is not None
                    and key.next_rotation <= now
                ):
                    ring.rotate(key, "AUTOMATIC")
                    key.next_rotation = now + key.rotation_period * self.settings.kms_day_seconds
                    ring.save(key)
                    self._internal_event(key, "RotateKey")

    def delete_customer_keys_now(self, account: str, region: str) -> int:
        """Delete every customer managed key of ``account`` in ``region`` at once, material and aliases
        included (a test server's reset: no deletion window); -> how many. AWS managed and owned keys stay."""
        ring = self._ring
        self._fresh()
        deleted = 0
        with ring.lock:
            for key in list(ring.keys.values()):
                if key.account == account and key.region == region and key.key_manager == "CUSTOMER":
                    ring.delete_key_now(key)
                    self._internal_event(key, "DeleteKey")
                    deleted += 1
            if deleted:
                self._authz.clear()
        return deleted

    def close(self) -> None:
        with self._ring.lock:
            self._ring.forget_material()
            self._store.close()
            self._root.close()

    def _material_aad(self, key: KmsKey, index: int) -> bytes:
        return self._ring.material_aad(key, index)

    # -- dispatch and audit --------------------------------------------------------------------------------

    def _bind(self, name: str, handler: Handler) -> Callable[[Caller, dict], dict]:
        ctx = self._ctx

        def call(caller: Caller, params: dict) -> dict:
            info = CallInfo()
            self._fresh()
            try:
                if params is None:
                    params = {}
                if not isinstance(params, dict):
                    raise AWSError(
                        "SerializationException", "Start of structure or map found where not expected."
                    )
                response = handler(ctx, caller, params, info)
            except AWSError as err:
                self._audit(name, caller, params, info, err)
                raise
            except Exception:
                log.exception("KMS %s failed", name)
                err = AWSError(
                    "KMSInternalException",
                    "The request was rejected because an internal "
                    "exception occurred. The request can be retried.",
                    500,
                )
                self._audit(name, caller, params, info, err)
                raise err from None
            self._audit(name, caller, params, info, None)
            return response

        call.__name__ = name
        return call

    def _audit(
        self, name: str, caller: Caller, params: object, info: CallInfo, err: AWSError | None
    ) -> None:
        event = events.api_call(
            source=EVENT_SOURCE,
            name=name,
            caller=caller,
            now=self.clock(),
            request=events.request_parameters(params, SECRET_PARAMS),
            response=info.response_elements,
            read_only=name in READ_ONLY or name.startswith(READ_ONLY_PREFIXES),
            resources=[events.resource(k.account, KEY_RESOURCE, k.arn) for k in info.keys],
            error=err,
        )
        # Recipients: the caller's account and each key owner's account; the AWS owned key's events stay in
        # AWS_OWNED_ACCOUNT only (customers never see them).
        owned = any(k.account == AWS_OWNED_ACCOUNT for k in info.keys)
        recipients = [AWS_OWNED_ACCOUNT] if owned else [caller.account]
        if not owned:
            for k in info.keys:
                if k.account not in recipients:
                    recipients.append(k.account)
        for ev in events.fan_out(event, recipients):
            try:
                self.trail.record(ev)
            except Exception:  # the audit trail failing must be loud, but not hide the call's own error
                log.exception("audit record failed")
                if err is None:
                    raise

    def _internal_event(self, key: KmsKey, name: str) -> None:
        self.trail.record(
            events.service_event(
                source=EVENT_SOURCE,
                name=name,
                account=key.account,
                region=key.region,
                now=self.clock(),
                resources=[events.resource(key.account, KEY_RESOURCE, key.arn)],
            )
        )
