"""Real server processes for tests (``tests/servers.py``) and the one create-table helper.

Fixtures:
- ``server_factory(group="", **settings)``: a server with those settings (flags, e.g.
  ``key_refresh_seconds=1``), started on first use and shared by every test of the session (of one xdist
  worker) asking for the same group and settings; killed when the session ends. Tests on a shared server use
  unique table/key names (``unique_name``) or an account of their own (a 12-digit access key names its
  account); a module whose assertions cover the whole server (its memory, say) names a group of its own.
  Module-scoped fixtures that create tables on it use unique names too: under xdist a worker may leave a
  module and come back to it, which sets its module fixtures up again on the same server.
- ``srv``: the module's server from ``server_factory``, with the module's ``SERVER_SETTINGS`` (default
  ``{"allow_any_credentials": True}``, the same server as ``shared_server``).
- ``shared_server``: ``server_factory(allow_any_credentials=True)``.
- ``start_server(**settings)``: a fresh server of the test's own (own data dir and root key), killed at the
  end of the test: for tests that restart, kill, tamper with or count things on the whole server.

``make_table(client, name, ...)`` creates a PAY_PER_REQUEST table (``from tests.conftest import make_table``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.servers import ServerProcess

DEFAULT_SETTINGS = {"allow_any_credentials": True}


def pytest_configure(config) -> None:
    """Compile the package's bytecode once, before any server starts: with PYTHONDONTWRITEBYTECODE set (as on
    these machines) every server process would otherwise compile ~150 modules from source, about half of
    its start-up CPU, and the suite starts hundreds of servers. Only stale files are rewritten."""
    import compileall
    import os

    import dynavault

    if "PYTEST_XDIST_WORKER" not in os.environ:  # once, in the controlling process
        compileall.compile_dir(os.path.dirname(dynavault.__file__), quiet=2)


def make_table(client, name: str, *, hash_type: str = "S", range_type: str | None = None, sse: dict | None = None,
               hash_key: str = "pk", range_key: str = "sk", **kwargs) -> dict:
    """CreateTable(pk [, sk]) on demand billing; extra CreateTable parameters pass through. -> TableDescription."""
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    defs = [{"AttributeName": hash_key, "AttributeType": hash_type}]
    if range_type is not None:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        defs.append({"AttributeName": range_key, "AttributeType": range_type})
    args = dict(TableName=name, KeySchema=schema, AttributeDefinitions=defs, BillingMode="PAY_PER_REQUEST",
                **kwargs)
    if sse is not None:
        args["SSESpecification"] = sse
    return client.create_table(**args)["TableDescription"]


def aws_error(call, **kwargs) -> tuple[str, str, int]:
    """(code, message, HTTP status) of the ClientError a boto3 call must raise."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    e = exc.value.response
    return e["Error"]["Code"], e["Error"]["Message"], e["ResponseMetadata"]["HTTPStatusCode"]


def aws_cli(endpoint: str, tmp_path, access_key: str = "testing") -> Callable[..., dict]:
    """``dynamodb`` commands of the AWS CLI against ``endpoint`` with throwaway credentials and no user config
    (the test is skipped when the CLI is not installed): ``cli(*args, ok=True)`` -> the parsed JSON answer, or
    ``{"stderr": ...}`` for an expected failure."""
    import json
    import os
    import shutil
    import subprocess

    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("AWS CLI not installed")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))

    def cli(*args: str, ok: bool = True) -> dict:
        out = subprocess.run([aws, "--endpoint-url", endpoint, "--output", "json", "dynamodb", *args], env=env,
                             capture_output=True, text=True, timeout=60)
        assert (out.returncode == 0) == ok, out.stderr
        return json.loads(out.stdout) if ok and out.stdout.strip() else {"stderr": out.stderr}

    return cli


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory) -> Iterator[Callable[..., ServerProcess]]:
    servers: dict[tuple, ServerProcess] = {}

    def get(group: str = "", **settings) -> ServerProcess:
        key = (group, *sorted(settings.items()))
        srv = servers.get(key)
        if srv is None:
            srv = ServerProcess(tmp_path_factory.mktemp(group or "server"), **settings)
            servers[key] = srv
        return srv

    yield get
    for srv in servers.values():
        srv.kill()  # nothing is checked after the session: a clean shutdown only costs time


@pytest.fixture(scope="module")
def srv(request, server_factory) -> ServerProcess:
    return server_factory(**getattr(request.module, "SERVER_SETTINGS", DEFAULT_SETTINGS))


@pytest.fixture(scope="session")
def shared_server(server_factory) -> ServerProcess:
    return server_factory(**DEFAULT_SETTINGS)


@pytest.fixture
def start_server(tmp_path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def start(name: str = "server", **settings) -> ServerProcess:
        srv = ServerProcess(tmp_path / f"{name}-{len(servers)}", **settings)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        # the data dir is thrown away: a clean shutdown (~0.3 s each) would check nothing; tests that need
        # one stop the server themselves (test_protocol.py::test_sigterm_exits_zero proves SIGTERM)
        srv.kill()


@pytest.fixture
def unique_name(request) -> str:
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:40]
    return f"{base}-{uuid.uuid4().hex[:8]}"
