#!/usr/bin/env python
"""What sharing one store costs two worker processes: PutItem's server CPU per operation when two processes
serve two clients' writes over one store (``shared``: ``--workers 2``) against two processes that each have a
store of their own (``split``: two ``--workers 1`` servers) and one process (``single``).

    python benchmarks/workers_store.py [--modes single,split,shared] [--rounds 2] [--duration 8] [--tree DIR]

Every mode gets the same load: two bench runners (``dynavault bench``'s load generator, in one client process),
each with 4 keep-alive connections and its own table of 2,000 1 KB items (one GSI), run together; in ``split``
each runner writes to its own server. The server CPU is the user + system time of every server process (all
threads) over the measured workload, from /proc, over the operations of both runners. Modes alternate within a
round, so a neighbour's load hits all of them alike.

``shared`` minus ``split`` is what sharing the SQLite file costs (the cross-process writer flock, and SQLite's
rule that a connection which sees another process's commit drops its page cache and memory map);
``split`` minus ``single`` is what running two processes costs (two event loops, two fsync threads, smaller
commit groups).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ab import _stop, cpu_seconds  # noqa: E402  benchmarks/ab.py, beside this script

from dynavault.bench import load  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tree: Path, work: Path, name: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(work / f"{name}.log", "wb")
    cmd = [sys.executable, "-m", "dynavault.cli", "serve", "--allow-any-credentials", "--host", "127.0.0.1",
           "--port", str(port), "--data-dir", str(work / name), "--root-key-file", str(work / "keys" / "root.key"),
           "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    line = proc.stdout.readline().decode()  # the ready line: every worker listens
    if not line.startswith("dynavault listening on"):
        raise RuntimeError(f"server did not start; see {work / (name + '.log')}")
    return proc, f"http://127.0.0.1:{port}"


def run_mode(mode: str, tree: Path, duration: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"dv-wstore-{mode}-") as tmp:
        work = Path(tmp)
        procs: list[subprocess.Popen] = []
        endpoints: list[str] = []
        try:
            for name, workers in {"single": [("a", 1)], "split": [("a", 1), ("b", 1)],
                                  "shared": [("a", 2)]}[mode]:
                p, ep = _start(tree, work, name, workers)
                procs.append(p)
                endpoints.append(ep)
            if len(endpoints) == 1:
                endpoints *= 2  # both runners to the one server
            runners = [load._Runner(load.BenchConfig(endpoint=e, workloads=("put",), duration=duration, items=2000,
                                                     connections=4, item_size=1024)) for e in endpoints]

            def server_cpu() -> float:
                return sum(cpu_seconds(p.pid) for p in procs)

            async def go() -> tuple[int, float, float]:
                await asyncio.gather(*(r.setup() for r in runners))
                c0, t0 = server_cpu(), time.monotonic()
                outs = await asyncio.gather(*(r.run_workload("put") for r in runners))
                c1, t1 = server_cpu(), time.monotonic()
                return sum(o["ops"] for o in outs), c1 - c0, t1 - t0

            ops, cpu, secs = load.run_in_new_loop(go())
        finally:
            for p in procs:
                _stop(p)
    return {"mode": mode, "ops_per_s": ops / secs, "cpu_us_per_op": cpu / ops * 1e6, "server_cores": cpu / secs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="single,split,shared")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--tree", type=Path, default=Path.cwd(), help="the source tree whose server runs")
    a = ap.parse_args()
    got: dict[str, list[dict]] = {}
    for rnd in range(a.rounds):
        for mode in a.modes.split(","):
            r = run_mode(mode, a.tree, a.duration)
            got.setdefault(mode, []).append(r)
            print(f"round {rnd + 1} {mode:6s} {r['ops_per_s']:7,.0f} ops/s  {r['cpu_us_per_op']:6.0f} µs server CPU "
                  f"per put  ({r['server_cores']:.2f} cores)  load {os.getloadavg()[0]:.2f}", flush=True)
    print("median µs per put: " + ", ".join(
        f"{m} {statistics.median(r['cpu_us_per_op'] for r in rs):.0f}" for m, rs in got.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
