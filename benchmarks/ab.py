#!/usr/bin/env python
"""A/B two source trees of dynavault: alternating runs of the same bench, with the server's CPU per operation.

    python benchmarks/ab.py --tree A=/path/to/base --tree B=. [--rounds 3] [--duration 5] [--workloads ...]

Each run starts ``python -m dynavault.cli serve --allow-any-credentials`` from one tree (its cwd, so that
tree's package is imported) on a fresh data dir, runs the ``dynavault bench`` workloads against it (the same
load generator as ``python -m dynavault.cli bench --json``, from this tree), and reads the server's user+system
CPU time from /proc around each workload: ``cpu_us_per_op`` is that time over the workload's operations
(Linux only). Runs alternate A, B, A, B, ... so a neighbour's load on a shared machine hits both alike; the
summary gives each tree's median per workload.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynavault.bench import load  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_times(pgid: int) -> tuple[float, float]:
    """User and system CPU seconds of the processes in process group ``pgid`` (threads included: the fsync
    thread counts; so does node under npx)."""
    user = system = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:
            user += int(fields[11])
            system += int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def cpu_seconds(pgid: int) -> float:
    """User + system CPU of the processes in process group ``pgid``."""
    return sum(cpu_times(pgid))


def measured_bench(endpoint: str, pgid: int, workloads: tuple[str, ...], cfg_args: dict) -> dict:
    """``dynavault bench`` (the same setup, workloads and read-back checks) with each workload's server CPU per
    operation (``cpu_us_per_op``) from the process group's CPU times; the result is shaped like ``--json``."""
    cfg = load.BenchConfig(endpoint=endpoint, workloads=workloads, **cfg_args)
    runner = load._Runner(cfg)
    inner = runner.run_workload

    async def measured(name: str) -> dict:
        before = cpu_seconds(pgid)
        out = await inner(name)
        if out.get("status") == "ok" and out["ops"]:
            out["cpu_us_per_op"] = round((cpu_seconds(pgid) - before) / out["ops"] * 1e6, 1)
        return out

    runner.run_workload = measured  # type: ignore[method-assign]

    async def go() -> dict:
        result: dict = {"endpoint": endpoint, "setup": await runner.setup()}
        try:
            result["workloads"] = {w: await runner.run_workload(w) for w in workloads}
        finally:
            await runner.teardown()
        wl = result["workloads"]
        checked = sum(w.get("verified", 0) for w in wl.values())
        failed = sum(w.get("verify_failures", 0) for w in wl.values())
        result["verification"] = {"checked": checked, "failed": failed, "ok": failed == 0}
        return result

    return load.run_in_new_loop(go())


def _start(tree: Path, work: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    log = open(work / "server.log", "wb")
    cmd = [sys.executable, "-m", "dynavault.cli", "serve", "--allow-any-credentials", "--host", "127.0.0.1",
           "--port", str(port), "--data-dir", str(work / "data"), "--root-key-file", str(work / "keys" / "root.key"), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=tree, stdout=log, stderr=log, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server from {tree} exited with {proc.returncode}; see {work / 'server.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not open its port")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _one_run(tree: Path, cfg_args: dict, workloads: tuple[str, ...]) -> dict:
    with tempfile.TemporaryDirectory(prefix="dv-ab-") as tmp:
        proc, port = _start(tree, Path(tmp))
        try:
            return measured_bench(f"http://127.0.0.1:{port}", proc.pid, workloads, cfg_args)["workloads"]
        finally:
            _stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", required=True, help="LABEL=PATH; give two or more")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workloads", default="get,put,query,mixed")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--item-size", type=int, default=1024)
    ap.add_argument("--json-out", type=Path, default=None)
    a = ap.parse_args()
    trees = [(label, Path(path).resolve()) for label, _, path in (t.partition("=") for t in a.tree)]
    workloads = tuple(a.workloads.split(","))
    cfg_args = {"duration": a.duration, "connections": a.connections, "items": a.items, "item_size": a.item_size,
                "access_key": "AKIDTEST", "secret_key": "x"}
    runs: dict[str, list[dict]] = {label: [] for label, _ in trees}
    for r in range(a.rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for label, tree in order:
            res = _one_run(tree, cfg_args, workloads)
            runs[label].append(res)
            print(f"round {r + 1} {label}: " + ", ".join(
                f"{w} {res[w].get('ops_per_s', 0):,.0f}/s {res[w].get('cpu_us_per_op', '-')}µs"
                + (f" ERR{res[w]['errors']}" if res[w].get("errors") else "") for w in workloads),
                file=sys.stderr, flush=True)
    if a.json_out:
        a.json_out.write_text(json.dumps(runs, indent=2))
    print(f"\n{a.rounds} alternating runs per tree, {a.connections} connections, {a.duration:g} s per workload, "
          f"{a.items} items; median ops/s (server CPU µs/op) [each run's ops/s]\n")
    print("| workload | " + " | ".join(label for label, _ in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for w in workloads:
        cells = []
        for label, _ in trees:
            ok = [r[w] for r in runs[label] if r[w].get("status") == "ok"]
            if not ok:
                cells.append("-")
                continue
            ops = [x["ops_per_s"] for x in ok]
            cpu = [x["cpu_us_per_op"] for x in ok if "cpu_us_per_op" in x]
            cells.append(f"{statistics.median(ops):,.0f} ({statistics.median(cpu):.0f} µs) "
                         f"[{'/'.join(f'{o:,.0f}' for o in ops)}]")
        print(f"| {w} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
