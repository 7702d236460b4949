"""How the database reaches KMS: in process (no HTTP) or a remote KMS-compatible endpoint.

Both expose ``invoke(caller, operation, params) -> dict`` with the JSON the wire carries, and raise
AWSError with the KMS error code. The remote client retries throttling and transient failures with
bounded, jittered backoff and fails with code ``KMSUnavailable`` in bounded time.
"""

from __future__ import annotations

import random
import time
from typing import Protocol

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError

RETRYABLE = {"ThrottlingException", "KMSInternalException", "DependencyTimeoutException", "LimitExceededException"}


class KmsClient(Protocol):
    def invoke(self, caller: Caller, operation: str, params: dict) -> dict: ...


class InProcessKms:
    def __init__(self, service) -> None:
        self.service = service

    def invoke(self, caller: Caller, operation: str, params: dict) -> dict:
        return self.service.invoke(caller, operation, params)


class RemoteKms:
    """A remote KMS endpoint, signed with the database's own credentials.

    The caller the database acts for is sent in ``x-dynavault-on-behalf-of`` (account, principal,
    via service) so our own key service can apply its policies to that principal when the signing
    credential is trusted for it; any other KMS ignores the header.
    """

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

    def invoke(self, caller: Caller, operation: str, params: dict) -> dict:
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
