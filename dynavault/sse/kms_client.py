"""Adapters of the key port (key_port.py) to a KMS that speaks TrentService JSON: in process (no HTTP)
or a remote KMS-compatible endpoint.

``WireKeys`` turns each port call into the wire request KMS's own API takes (the same parameters, so
the audit trail shows what a DynamoDB would send) and the answer or AWSError back into bytes, records
and typed errors; subclasses only carry a request: ``InProcessKms`` hands it to the key service's
dispatch (which authorizes and audits it), ``RemoteKms`` signs and posts it. The remote client retries
throttling and transient failures with bounded, jittered backoff and fails with ``KeyUnavailable``
(code ``KMSUnavailable``) in bounded time.
"""

from __future__ import annotations

import base64
import random
import time

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError

from .key_port import DataKey, Grant, KeyInfo, KeyPortError, key_error

RETRYABLE = {"ThrottlingException", "KMSInternalException", "DependencyTimeoutException", "LimitExceededException"}


class WireKeys:
    """The key port over ``_invoke(caller, operation, params) -> dict`` (raising AWSError)."""

    def _invoke(self, caller: Caller, operation: str, params: dict) -> dict:
        raise NotImplementedError

    def _call(self, caller: Caller, operation: str, params: dict) -> dict:
        try:
            return self._invoke(caller, operation, params)
        except AWSError as err:
            raise key_error(err.code, err.message, err.status) from None

    def describe_key(self, caller: Caller, key_id: str) -> KeyInfo:
        meta = self._call(caller, "DescribeKey", {"KeyId": key_id})["KeyMetadata"]
        return KeyInfo(arn=meta["Arn"], state=meta.get("KeyState"), manager=meta.get("KeyManager"),
                       usage=meta.get("KeyUsage", "ENCRYPT_DECRYPT"), spec=meta.get("KeySpec", "SYMMETRIC_DEFAULT"))

    def generate_data_key(self, caller: Caller, key_id: str, context: dict[str, str]) -> DataKey:
        out = self._call(caller, "GenerateDataKey", {"KeyId": key_id, "KeySpec": "AES_256",
                                                     "EncryptionContext": context})
        return DataKey(base64.b64decode(out["Plaintext"]), base64.b64decode(out["CiphertextBlob"]))

    def decrypt(self, caller: Caller, blob: bytes, context: dict[str, str]) -> bytes:
        out = self._call(caller, "Decrypt", {"CiphertextBlob": base64.b64encode(blob).decode(),
                                             "EncryptionContext": context})
        return base64.b64decode(out["Plaintext"])

    def create_grant(self, caller: Caller, key_id: str, *, grantee: str, retiring: str,
                     operations: list[str], context_subset: dict[str, str]) -> Grant:
        out = self._call(caller, "CreateGrant", {
            "KeyId": key_id,
            "GranteePrincipal": grantee,
            "RetiringPrincipal": retiring,
            "Operations": operations,
            "Constraints": {"EncryptionContextSubset": context_subset},
        })
        return Grant(out["GrantId"], out.get("GrantToken", ""))

    def retire_grant(self, caller: Caller, key_id: str, grant_id: str) -> None:
        self._call(caller, "RetireGrant", {"KeyId": key_id, "GrantId": grant_id})


class InProcessKms(WireKeys):
    """The key service in this process, through its dispatch so every call is authorized and audited."""

    def __init__(self, service) -> None:
        self.service = service

    def _invoke(self, caller: Caller, operation: str, params: dict) -> dict:
        return self.service.invoke(caller, operation, params)


class RemoteKms(WireKeys):
    """A remote KMS endpoint, signed with the database's own credentials.

    The caller the database acts for is sent in ``x-dynavault-on-behalf-of`` (account, principal,
    via service) so our own key service can apply its policies to that principal when the signing
    credential is trusted for it; any other KMS ignores the header.
    """

    #: each call waits on the network (TableKeyService moves such requests off the event loop)
    blocking = True

    def __init__(self, endpoint: str, access_key: str, secret_key: str, *, timeout: float = 2.0,
                 attempts: int = 3, base_delay: float = 0.05) -> None:
        import urllib3
        from botocore.credentials import Credentials

        self.endpoint = endpoint.rstrip("/") + "/"
        self.credentials = Credentials(access_key, secret_key)
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.attempts = attempts
        self.base_delay = base_delay
        self.pool = urllib3.PoolManager(maxsize=8, retries=False)
        self._owned_arns: dict[str, str] = {}

    def owned_key_arn(self, service: Caller) -> str:
        """The AWS owned key of ``service``'s region: the remote KMS keeps it under a reserved alias of the
        service account (``service`` is DynamoDB acting in that account)."""
        arn = self._owned_arns.get(service.region)
        if arn is None:
            try:
                arn = self.describe_key(service, "alias/aws/dynamodb-owned").arn
            except KeyPortError as err:  # answered as the KMS said it
                raise AWSError(err.code, err.message, err.status) from None
            self._owned_arns[service.region] = arn
        return arn

    def _invoke(self, caller: Caller, operation: str, params: dict) -> dict:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        body = orjson.dumps(params)
        last: AWSError | None = None
        for attempt in range(self.attempts):
            headers = {
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"TrentService.{operation}",
                "x-dynavault-on-behalf-of": orjson.dumps({
                    "account": caller.account, "principal": caller.principal_arn,
                    "via": caller.via_service, "service": caller.is_service,
                }).decode(),
            }
            request = AWSRequest("POST", self.endpoint, data=body, headers=headers)
            SigV4Auth(self.credentials, "kms", caller.region).add_auth(request)
            try:
                resp = self.pool.request("POST", self.endpoint, body=body, headers=dict(request.headers),
                                         timeout=self.timeout)
            except Exception as exc:  # connection refused, timeout: transient, retry then fail closed
                last = AWSError("KMSUnavailable", f"KMS endpoint unreachable: {type(exc).__name__}", 500)
            else:
                data = orjson.loads(resp.data) if resp.data else {}
                if resp.status == 200:
                    return data
                code = str(data.get("__type", "KMSInternalException")).rsplit("#", 1)[-1]
                last = AWSError(code, data.get("message") or data.get("Message") or "", resp.status)
                if code not in RETRYABLE and resp.status < 500:
                    raise last
            if attempt + 1 < self.attempts:
                time.sleep(self.base_delay * (2**attempt) * (0.5 + random.random()))
        assert last is not None
        raise last
