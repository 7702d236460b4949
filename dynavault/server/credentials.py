"""Access keys: access key id -> secret, account id, principal ARN; a JSON file under the data dir.

On first start with an empty data dir one root credential is created and printed once, like a
root password. The file is written with mode 0600; it holds secrets, not user data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

_ACCOUNT_RE = re.compile(r"^\d{12}$")


@dataclass(frozen=True, slots=True)
class Credential:
    access_key_id: str
    secret_access_key: str
    account_id: str
    principal_arn: str

    def __repr__(self) -> str:  # never show the secret
        return f"Credential({self.access_key_id!r}, account={self.account_id!r})"


def _new_access_key_id() -> str:
    alphabet = string.ascii_uppercase + "234567"
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


def _new_secret() -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(secrets.choice(alphabet) for _ in range(40))


def new_account_id() -> str:
    return str(100000000000 + secrets.randbelow(899999999999))


class CredentialStore:
    """Looks up access keys; with ``allow_any`` every key id is accepted and picks an account."""

    def __init__(self, path: Path | None, *, allow_any: bool = False, default_account: str = "000000000000",
                 reserved_accounts: frozenset[str] = frozenset()) -> None:
        """``path`` None: the keys live in this process only (``--in-memory``)."""
        self.path = path
        #: service accounts (the AWS owned keys' owner) that no access key may act as
        self.reserved_accounts = reserved_accounts
        self.allow_any = allow_any
        self.default_account = default_account
        self._by_key: dict[str, Credential] = {}
        #: allow_any's made-up credentials, made once per key id (bounded: short ids only, cleared when full)
        self._any: dict[str, Credential] = {}
        if path is not None and path.exists():
            self._load()

    def _load(self) -> None:
        doc = json.loads(self.path.read_text())
        for entry in doc.get("credentials", []):
            cred = Credential(
                entry["access_key_id"], entry["secret_access_key"], entry["account_id"], entry["principal_arn"]
            )
            self._by_key[cred.access_key_id] = cred

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "credentials": [
                {
                    "access_key_id": c.access_key_id,
                    "secret_access_key": c.secret_access_key,
                    "account_id": c.account_id,
                    "principal_arn": c.principal_arn,
                }
                for c in self._by_key.values()
            ]
        }
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def is_empty(self) -> bool:
        return not self._by_key

    def create(self, account_id: str | None = None, user_name: str | None = None) -> Credential:
        account_id = account_id or new_account_id()
        if not _ACCOUNT_RE.match(account_id):
            raise ValueError("account id must be 12 digits")
        principal = f"arn:aws:iam::{account_id}:" + (f"user/{user_name}" if user_name else "root")
        cred = Credential(_new_access_key_id(), _new_secret(), account_id, principal)
        self._by_key[cred.access_key_id] = cred
        self._save()
        return cred

    def all(self) -> list[Credential]:
        return list(self._by_key.values())

    def lookup(self, access_key_id: str) -> Credential | None:
        cred = self._by_key.get(access_key_id)
        if cred is None and self.allow_any:
            cred = self._any.get(access_key_id)
            if cred is None:
                cred = self._any_credential(access_key_id)
                if len(access_key_id) <= 128:
                    if len(self._any) >= 4096:
                        self._any.clear()
                    self._any[access_key_id] = cred
        if cred is not None and cred.account_id in self.reserved_accounts:
            return None
        return cred

    def _any_credential(self, access_key_id: str) -> Credential:
        # Test setups: a 12-digit key id names its account; any other key id uses the default account.
        if _ACCOUNT_RE.match(access_key_id):
            account = access_key_id
        elif access_key_id[:12].isdigit() and len(access_key_id) > 12:
            account = access_key_id[:12]
        else:
            account = self.default_account
        safe_name = re.sub(r"[^\w+=,.@-]", "_", access_key_id) or "anonymous"
        return Credential(access_key_id, "", account, f"arn:aws:iam::{account}:user/{safe_name}")


def fingerprint(secret: str) -> str:
    """A short non-reversible tag for logs."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]
