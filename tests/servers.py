"""A real server process for tests: ``dynavault serve`` / ``dynavault kms serve`` on 127.0.0.1, on a free port,
with its own data dir and root key, configured by settings passed as flags (``key_refresh_seconds=1``)."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

READY_PREFIXES = ("dynavault listening on ", "dynavault kms listening on ")


@functools.cache
def boto_session() -> tuple[boto3.session.Session, threading.Lock]:
    """One boto3 session per test process, and the lock to make clients from it (a session is not thread-safe,
    its clients are). A client from a new session parses its service model again (~100 ms of CPU); from this
    one it costs ~3 ms, and it still has a connection pool (so TCP connections) of its own."""
    return boto3.session.Session(), threading.Lock()


class ServerProcess:
    def __init__(self, base: Path, *, kms_only: bool = False, **settings) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.kms_only = kms_only
        self.data_dir = Path(settings.pop("data_dir", base / "data"))
        self.root_key_file = Path(settings.pop("root_key_file", base / "keys" / "root.key"))
        self.log_path = base / "server.log"
        # one process unless a test asks for more: the default (a worker per core) would multiply the suite's
        # cost by the cores
        settings.setdefault("workers", 1)
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""
        self.port = 0
        self.stdout_lines: list[str] = []
        self.start()

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "dynavault.cli"]
        cmd += ["kms", "serve"] if self.kms_only else ["serve"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.settings.get("port", 0)),
                "--data-dir", str(self.data_dir), "--root-key-file", str(self.root_key_file)]
        for name, value in self.settings.items():
            if name == "port":
                continue
            flag = "--" + name.replace("_", "-")
            if value is True:
                cmd.append(flag)
            elif value is not False and value is not None:
                cmd += [flag, str(value)]
        return cmd

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ)
        env.pop("AWS_PROFILE", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=log, env=env)
        log.close()
        deadline = time.time() + timeout
        assert self.proc.stdout is not None
        while True:
            if time.time() > deadline:
                self.proc.kill()
                raise RuntimeError(f"server not ready in {timeout}s; log:\n{self.log_path.read_text()[-4000:]}")
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"server exited ({self.proc.wait()}); log:\n{self.log_path.read_text()[-4000:]}")
            self.stdout_lines.append(line)
            if line.startswith(READY_PREFIXES):
                self.endpoint = line.split(" on ", 1)[1].split()[0]  # a note may follow (--in-memory)
                self.port = int(self.endpoint.rsplit(":", 1)[1])
                self.settings["port"] = self.port  # a restart keeps the same endpoint
                break
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    def _drain(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:  # type: ignore[union-attr]
            self.stdout_lines.append(raw.decode(errors="replace"))

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") + "".join(self.stdout_lines)

    def client(self, service: str, access_key: str = "testing", secret: str = "testing",
               region: str = "us-east-1", validate: bool = True, **config):
        session, lock = boto_session()
        with lock:
            return session.client(
                service,
                endpoint_url=self.endpoint,
                region_name=region,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret,
                config=Config(retries={"total_max_attempts": 1}, parameter_validation=validate,
                              connect_timeout=10, read_timeout=60, **config),
            )

    def resource(self, service: str = "dynamodb", access_key: str = "testing", secret: str = "testing",
                 region: str = "us-east-1"):
        session, lock = boto_session()
        with lock:
            return session.resource(
                service, endpoint_url=self.endpoint, region_name=region, aws_access_key_id=access_key,
                aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}),
            )
