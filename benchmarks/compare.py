#!/usr/bin/env python
"""Reproduce the README table: dynavault vs dynalite vs dynoxide vs moto, each started on loopback, same run.

    python benchmarks/compare.py [--duration 10] [--items 2000] [--connections 8] [--workloads get,put,query]

Needs ``pip install 'moto[server]'`` (moto_server on PATH) and node/npm: dynalite and dynoxide are installed
into the run's temp dir (``npm install dynalite``; ``npm install @dynoxide/linux-x64``, the platform package
that carries dynoxide's binary) unless ``--dynalite-dir`` / ``--dynoxide-dir`` point at an existing install.
dynoxide runs in memory (no ``--db-path``), as dynalite does. A server that is not available is skipped with
a note. Every server gets a fresh data dir and is stopped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ab import measured_bench  # benchmarks/ab.py, beside this script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not open after {timeout}s")


def _npm_install(where: Path, package: str, log) -> None:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", package], cwd=where, check=True,
                   stdout=log, stderr=log)


def _dynoxide_package() -> str:
    """dynoxide's npm wrapper only picks a per-platform package holding the native binary; we install that."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    osname = {"linux": "linux", "darwin": "darwin"}.get(sys.platform)
    if arch is None or osname is None:
        raise RuntimeError(f"no dynoxide package for {sys.platform}/{platform.machine()}")
    return f"@dynoxide/{osname}-{arch}"


def _dynoxide_binary(install_dir: Path) -> Path:
    for candidate in sorted((install_dir / "node_modules" / "@dynoxide").glob("*/dynoxide")):
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"no dynoxide binary under {install_dir}/node_modules/@dynoxide")


def _data_dir(work: Path, workers: str = "1") -> Path:
    """Where ``_start`` puts the data dir of a dynavault server with ``workers`` processes."""
    return work / f"dv-data-{workers}"


def _start(name: str, work: Path, dynalite_dir: Path | None,
           dynoxide_dir: Path | None = None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(work / f"{name}.log", "wb")
    if name == "dynavault" or name.startswith("dynavault-w"):  # dynavault-wN: --workers N
        workers = name.removeprefix("dynavault-w") if name != "dynavault" else "1"
        cmd = [sys.executable, "-m", "dynavault.cli", "serve", "--allow-any-credentials", "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(_data_dir(work, workers)), "--root-key-file",
               str(work / "dv-keys" / "root.key"), "--workers", workers]
    elif name == "moto":
        exe = shutil.which("moto_server")
        if not exe:
            raise RuntimeError("moto_server not on PATH (pip install 'moto[server]')")
        cmd = [exe, "-H", "127.0.0.1", "-p", str(port)]
    elif name == "dynalite":
        if dynalite_dir is None:
            dynalite_dir = work / "dynalite"
            _npm_install(dynalite_dir, "dynalite", log)
        cmd = ["npx", "dynalite", "--port", str(port), "--host", "127.0.0.1"]
        proc = subprocess.Popen(cmd, cwd=dynalite_dir, stdout=log, stderr=log, start_new_session=True)
        _wait_port(port, proc)
        return proc, f"http://127.0.0.1:{port}"
    elif name == "dynoxide":
        if dynoxide_dir is None:
            dynoxide_dir = work / "dynoxide"
            _npm_install(dynoxide_dir, _dynoxide_package(), log)
        cmd = [str(_dynoxide_binary(dynoxide_dir)), "serve", "--host", "127.0.0.1", "--port", str(port)]
    else:
        raise ValueError(name)
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    _wait_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # our own process group (npx spawns node as a child)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default="dynavault,dynalite,dynoxide,moto",
                    help="comma-separated; dynavault-wN runs dynavault with --workers N")
    ap.add_argument("--workloads", default="get,put,query")
    ap.add_argument("--duration", default="10")
    ap.add_argument("--items", default="2000")
    ap.add_argument("--connections", default="8")
    ap.add_argument("--item-size", default="1024")
    ap.add_argument("--dynalite-dir", type=Path, default=None, help="an existing `npm install dynalite` dir")
    ap.add_argument("--dynoxide-dir", type=Path, default=None,
                    help="an existing `npm install @dynoxide/linux-x64` dir")
    ap.add_argument("--json-out", type=Path, default=None, help="also write all raw results here")
    a = ap.parse_args()
    workloads = a.workloads.split(",")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="dv-compare-") as tmp:
        work = Path(tmp)
        for name in a.servers.split(","):
            try:
                proc, endpoint = _start(name, work, a.dynalite_dir, a.dynoxide_dir)
            except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
                results[name] = {"error": f"not started: {e}"}
                print(f"{name}: {e}", file=sys.stderr)
                continue
            try:
                print(f"{name}: bench {endpoint} --workloads {a.workloads} --duration {a.duration} --items "
                      f"{a.items} --connections {a.connections} --item-size {a.item_size}", file=sys.stderr, flush=True)
                # dynavault bench's own load, with the server's CPU per operation (its process group's CPU times)
                results[name] = measured_bench(endpoint, proc.pid, tuple(workloads), {
                    "duration": float(a.duration), "items": int(a.items), "connections": int(a.connections),
                    "item_size": int(a.item_size)})
            except Exception as e:  # a server that breaks mid-run is reported, the others still run
                results[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
            finally:
                _stop(proc)
    if a.json_out:
        a.json_out.write_text(json.dumps(results, indent=2))
    _print_table(results, workloads, a)
    return 0


def _print_table(results: dict, workloads: list[str], a) -> None:
    print(f"\n{a.connections} keep-alive connections, {a.item_size}-byte items, {a.items} items, "
          f"{a.duration} s per workload; ops/s (p50 / p99 ms) [server CPU µs per operation, from its process "
          "times]; read-back verification per server\n")
    names = list(results)
    print("| workload | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for w in workloads:
        cells = []
        for n in names:
            r = results[n]
            wr = (r.get("workloads") or {}).get(w)
            if "error" in r:
                cells.append("not run")
            elif wr is None or wr.get("status") != "ok":
                cells.append("unsupported")
            else:
                err = f", {wr['errors']} errors" if wr["errors"] else ""
                cpu = f" [{wr['cpu_us_per_op']:.0f} µs]" if "cpu_us_per_op" in wr else ""
                cells.append(f"{wr['ops_per_s']:,.0f} ({wr['p50_ms']:.2f} / {wr['p99_ms']:.2f}){cpu}{err}")
        print(f"| {w} | " + " | ".join(cells) + " |")
    ver = []
    for n in names:
        v = results[n].get("verification")
        ver.append("-" if v is None else f"{v['checked'] - v['failed']}/{v['checked']} ok")
    print("| verified reads | " + " | ".join(ver) + " |")
    for n in names:
        if "error" in results[n]:
            print(f"\n{n}: {results[n]['error']}")


if __name__ == "__main__":
    sys.exit(main())
