"""The official DAX Python client (amazon-dax-client, pinned), run in a virtualenv of its own: it pins
botocore<2 and an antlr runtime, which must not touch the test environment.

``run_client(python, endpoint, key, secret, body)`` runs ``body`` (Python source) after a prelude that builds
``dax`` (an AmazonDaxClient on ``endpoint``) and defines ``out(name, value)`` (collects results) and
``err(call, **kw)`` (the error code and message a call raises, or None); the collected results come back as a
dict, bytes as {"$b": base64}.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLIENT_VERSION = "2.1.0"
VENV = Path(os.environ.get("DYNAVAULT_DAX_VENV", Path.home() / ".cache" / "dynavault-test" / "dax-venv"))

PRELUDE = '''
import base64, json, sys
from amazondax import AmazonDaxClient
RESULTS = {}
def _plain(v):
    if isinstance(v, (bytes, bytearray)):
        return {"$b": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "as_tuple"):
        return str(v)
    return v
def out(name, value):
    RESULTS[name] = _plain(value)
def err(call, **kw):
    try:
        call(**kw)
    except Exception as e:
        resp = getattr(e, "response", {}) or {}
        return {"code": resp.get("Error", {}).get("Code", type(e).__name__),
                "message": resp.get("Error", {}).get("Message", str(e)),
                "reasons": _plain(getattr(e, "cancellation_reasons", None))}
    return None
dax = AmazonDaxClient(endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id=KEY,
                      aws_secret_access_key=SECRET)
'''

EPILOGUE = '''
dax.close()
print("RESULTS " + json.dumps(RESULTS))
'''


def dax_python() -> str:
    """The virtualenv's python, made once per machine (a lock keeps parallel test workers from racing)."""
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "dax-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ok = python.exists() and subprocess.run([str(python), "-c", "import amazondax"],
                                                capture_output=True).returncode == 0
        if not ok:
            made = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True)
            if made.returncode == 0:
                made = subprocess.run([str(python), "-m", "pip", "install", "-q",
                                       f"amazon-dax-client=={CLIENT_VERSION}"], capture_output=True, timeout=600)
            if made.returncode != 0:
                pytest.skip(f"amazon-dax-client {CLIENT_VERSION} could not be installed: {made.stderr[-500:]!r}")
    return str(python)


def run_client(python: str, endpoint: str, key: str, secret: str, body: str, *, timeout: float = 120,
               extra_env: dict[str, str] | None = None) -> dict:
    source = (f"ENDPOINT = {endpoint!r}\nKEY = {key!r}\nSECRET = {secret!r}\n" + PRELUDE
              + textwrap.dedent(body) + EPILOGUE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | (extra_env or {})
    done = subprocess.run([python, "-c", source], capture_output=True, text=True, timeout=timeout, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULTS "):
            return json.loads(line[8:])
    raise AssertionError(f"DAX client script failed ({done.returncode}):\n{done.stderr[-4000:]}")


def b(value: dict) -> bytes:
    """The bytes a result held ({"$b": base64})."""
    return base64.b64decode(value["$b"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
