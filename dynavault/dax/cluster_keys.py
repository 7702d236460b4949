"""An encrypted cluster's key, under DAX's single service default key: the AWS managed key ``alias/aws/dax``.

DAX encrypts what a cluster persists under that one key per account and region, which KMS makes when the
first encrypted cluster is created; DAX calls KMS at a cluster's launch, not per operation. So here:
CreateCluster with SSESpecification Enabled asks KMS for a 256-bit data key under ``alias/aws/dax`` (the
GenerateDataKey makes the managed key on first use and is recorded in the caller's trail, invoked by
dax.amazonaws.com); the cluster record keeps only the KMS ciphertext. Each server process that starts
serving the cluster decrypts it once, as DAX itself (an AWSService event). An unencrypted cluster uses no key.

What a cluster persists here: nothing of its own. Its caches are in memory, sealed under each table's keys;
the attribute-list registry belongs to the account and region, shared by every cluster and by clients that
name none, and is sealed under its own registry key. The cluster's plaintext key therefore seals nothing
today; it is held per process, and whatever per-cluster state reaches disk later is to be sealed with it.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable

from dynavault.caller import Caller

MANAGED_DAX_ALIAS = "alias/aws/dax"
DAX_SERVICE = "dax.amazonaws.com"

#: ``generate(caller, key id, context) -> (plaintext, blob)`` / ``decrypt(caller, blob, context) -> plaintext``:
#: KMS through the database's key port; failures raise AWSError
Generate = Callable[[Caller, str, dict[str, str]], tuple[bytes, bytes]]
Decrypt = Callable[[Caller, bytes, dict[str, str]], bytes]


def encryption_context(account: str, cluster_arn: str) -> dict[str, str]:
    return {"aws:dax:subscriberId": account, "aws:dax:clusterArn": cluster_arn}


def dax_service(account: str, region: str) -> Caller:
    """DAX itself, acting in ``account`` (a service principal: the trail shows invokedBy dax.amazonaws.com)."""
    regional = f"dax.{region}.amazonaws.com"
    return Caller(account=account, region=region, principal_arn=regional, source_ip=DAX_SERVICE,
                  user_agent=DAX_SERVICE, via_service=regional, is_service=True)


class ClusterKeys:
    """Makes an encrypted cluster's key and opens it once per process (plaintexts never leave memory)."""

    def __init__(self, generate: Generate, decrypt: Decrypt) -> None:
        self._generate = generate
        self._decrypt = decrypt
        self._lock = threading.Lock()
        #: KMS ciphertext (base64) -> plaintext, for the clusters this process serves
        self._open: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"ClusterKeys({len(self._open)} open)"

    def create(self, caller: Caller, cluster_arn: str) -> str:
        """A new cluster's key, made under alias/aws/dax by ``caller`` through DAX; returns its KMS ciphertext,
        base64 (what the cluster record keeps)."""
        who = caller.on_behalf(f"dax.{caller.region}.amazonaws.com")
        plaintext, blob = self._generate(who, MANAGED_DAX_ALIAS, encryption_context(caller.account, cluster_arn))
        text = base64.b64encode(blob).decode()
        with self._lock:
            self._open[text] = plaintext
        return text

    def open(self, cluster: dict) -> bytes:
        """The plaintext key of an encrypted cluster record, decrypted by DAX itself the first time this process
        serves the cluster. Raises AWSError when KMS refuses (the key disabled, the blob altered)."""
        text = cluster["KeyBlob"]
        with self._lock:
            found = self._open.get(text)
        if found is not None:
            return found
        plaintext = self._decrypt(dax_service(cluster["Account"], cluster["Region"]), base64.b64decode(text),
                                  encryption_context(cluster["Account"], cluster["ClusterArn"]))
        with self._lock:
            self._open[text] = plaintext
        return plaintext

    def forget(self, cluster: dict) -> None:
        """A deleted cluster's key leaves memory."""
        text = cluster.get("KeyBlob")
        if text is not None:
            with self._lock:
                self._open.pop(text, None)

    def is_open(self, cluster: dict) -> bool:
        with self._lock:
            return cluster.get("KeyBlob") in self._open
