"""DAX fixtures: the official client's virtualenv, and a server with the DAX data plane on and real
credentials (the root credential it prints at its first start), so signatures are checked."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from tests.dax.daxclient import dax_python, free_port, run_client
from tests.servers import ServerProcess


@dataclass
class DaxServer:
    srv: ServerProcess
    key: str
    secret: str

    @property
    def dax_endpoint(self) -> str:
        return f"dax://127.0.0.1:{self.srv.settings['dax_port']}"

    def http(self):
        return self.srv.client("dynamodb", access_key=self.key, secret=self.secret)

    def run(self, python: str, body: str, *, secret: str | None = None, key: str | None = None) -> dict:
        return run_client(python, self.dax_endpoint, key or self.key, secret or self.secret, body)


def dax_server(srv: ServerProcess) -> DaxServer:
    text = "".join(srv.stdout_lines)
    key = re.search(r"aws_access_key_id = (\S+)", text).group(1)
    secret = re.search(r"aws_secret_access_key = (\S+)", text).group(1)
    assert any(line.startswith("dynavault DAX listening on dax://") for line in srv.stdout_lines)
    return DaxServer(srv, key, secret)


@pytest.fixture(scope="session")
def dax_py() -> str:
    return dax_python()


@pytest.fixture(scope="module")
def dax(server_factory) -> DaxServer:
    return dax_server(server_factory(group="dax", dax_port=free_port()))
