"""Console test helpers: a server with real access keys (two accounts) and a signed-in HTTP session."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.servers import ServerProcess

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str
    account: str


def create_credentials(data_dir: Path, account: str, user: str | None = None) -> Key:
    """``dynavault credentials create`` before the server starts (the server reads its credentials at start)."""
    cmd = [sys.executable, "-m", "dynavault.cli", "credentials", "create", "--data-dir", str(data_dir),
           "--account", account]
    if user:
        cmd += ["--user", user]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return Key(re.search(r"aws_access_key_id = (\S+)", out)[1], re.search(r"aws_secret_access_key = (\S+)", out)[1],
               account)


def start_with_accounts(base: Path, accounts: list[str], **settings) -> tuple[ServerProcess, list[Key]]:
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    keys = [create_credentials(data, account) for account in accounts]
    return ServerProcess(base, data_dir=data, **settings), keys


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match[1]


def sign_in(endpoint: str, key: Key, region: str = "us-east-1") -> tuple[requests.Session, str]:
    """A signed-in console session -> (HTTP session, the session's CSRF token)."""
    http = requests.Session()
    page = http.get(endpoint + "/console/login")
    page.raise_for_status()
    answer = http.post(endpoint + "/console/login", allow_redirects=False,
                       data={"csrf": csrf_of(page.text), "access_key_id": key.access_key_id,
                             "secret_access_key": key.secret, "region": region})
    assert answer.status_code == 303, answer.text[-500:]
    tables = http.get(endpoint + "/console/tables")
    assert tables.status_code == 200
    return http, csrf_of(tables.text)
