"""``--workers N``: N processes serve one port over one data dir (DESIGN.md "Processes and state").

The supervisor (this process) reserves the port, starts worker 0, which also does what a start does once
per store (creating the first credential, finishing or removing work a stopped server left half done, and
forgetting stale leases), then the others. Each worker binds its own listening socket to the port with
SO_REUSEPORT, so the kernel spreads new connections over the workers and no accept lock is shared. The
supervisor prints the ready line once every worker listens, restarts a worker that dies, and stops them all
on SIGTERM/SIGINT. Workers stop by themselves when the supervisor disappears (even by kill -9).

What every worker caches of the store (the catalog, the key ring) follows the shared change counters
(storage/signal.py); the store-wide periodic jobs run in the holder of the background lease (leases.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait

from dynavault.config import Settings
from dynavault.errors import StartupError
from dynavault.storage.signal import ChangeSignal

log = logging.getLogger("dynavault.server")

READY_TIMEOUT = 120.0
#: how long an orphaned worker's graceful stop may take before it exits anyway
ORPHAN_GRACE_SECONDS = 45.0


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _watch_supervisor(conn: Connection) -> None:
    """End this worker when the supervisor's end of the pipe closes (it died or is gone): gracefully, and for
    good if the graceful stop has not ended it well after uvicorn's 30 s grace (a loop that cannot stop)."""
    try:
        while True:
            conn.recv()
    except (EOFError, OSError):
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE_SECONDS)
    log.error("worker %d: the supervisor is gone and the graceful stop did not end; exiting", os.getpid())
    os._exit(1)


def _worker_main(settings: Settings, kms_only: bool, port: int, index: int, first: bool, conn: Connection,
                 setup_logging: Callable[[Settings], None]) -> None:
    setup_logging(settings)
    from .runtime import build_runtime
    from .serving import serve

    try:
        runtime = build_runtime(settings, kms_only=kms_only, worker=True, first=first, index=index)
    except StartupError as exc:
        conn.send(("error", str(exc)))
        raise SystemExit(2) from None
    sock = _socket(settings.host, port)
    threading.Thread(target=_watch_supervisor, args=(conn,), name="supervisor-watch", daemon=True).start()
    log.info("worker %d (pid %d) serving", index, os.getpid())
    serve(runtime, settings, sock=sock, on_ready=lambda host, p: conn.send(("ready", p)))


class _Worker:
    def __init__(self, ctx, settings: Settings, kms_only: bool, port: int, index: int, first: bool,
                 setup_logging: Callable[[Settings], None]) -> None:
        self.index = index
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, name=f"dynavault-worker-{index}",
                                args=(settings, kms_only, port, index, first, child, setup_logging))
        self.proc.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.conn.poll(0.2):
                try:
                    kind, detail = self.conn.recv()
                except EOFError:
                    break
                if kind == "ready":
                    return
                raise StartupError(detail)
            if not self.proc.is_alive():
                break
        raise StartupError(f"worker {self.index} did not start (exit status {self.proc.exitcode}); see the log")


def _preflight(settings: Settings) -> None:
    """Refuse here, before any worker runs, a start whose root key cannot open the key material (or is too
    open), with the one line a single process gives: a refused start writes nothing to the data dir, and a
    worker would create the shared change counters before its key service looks at the root key."""
    if settings.kms_endpoint:
        return  # no local key service
    from dynavault.kms.trust import open_checked_root

    open_checked_root(settings).close()


def serve_workers(settings: Settings, *, kms_only: bool, setup_logging: Callable[[Settings], None]) -> int:
    if kms_only:
        raise StartupError("--workers applies to `dynavault serve`; `dynavault kms serve` runs in one process")
    _preflight(settings)
    # Bound but not listening: holds the port for the workers (and gives --port 0 its number); the kernel
    # hands connections only to the workers' listening sockets.
    reserve = _socket(settings.host, settings.port)
    port = reserve.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def on_signal(signum, frame) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def start(index: int, first: bool) -> _Worker:
        return _Worker(ctx, settings, kms_only, port, index, first, setup_logging)

    workers: list[_Worker] = []
    changes: ChangeSignal | None = None
    try:
        workers.append(start(0, True))
        workers[0].wait_ready(READY_TIMEOUT)  # worker 0 has done the once-per-store start
        workers += [start(i, False) for i in range(1, settings.workers)]
        for w in workers[1:]:
            w.wait_ready(READY_TIMEOUT)
        from .runtime import CHANGES_FILE

        changes = ChangeSignal(settings.data_path(CHANGES_FILE))
        host = settings.host
        log.info("%d workers serving port %d", settings.workers, port)
        print(f"dynavault listening on http://{host}:{port}", flush=True)
        while not stopping.is_set():
            for w in workers:
                if w.proc.is_alive() or stopping.is_set():
                    continue
                log.warning("worker %d (pid %s) exited with status %s; starting another", w.index, w.proc.pid,
                            w.proc.exitcode)
                # Whatever it committed last may not have been announced: every cache reloads.
                changes.bump_all()
                w.conn.close()
                replacement = start(w.index, False)
                workers[workers.index(w)] = replacement
                try:
                    replacement.wait_ready(READY_TIMEOUT)
                except StartupError as exc:
                    log.error("worker %d could not be restarted: %s", w.index, exc)
            wait([w.proc.sentinel for w in workers], timeout=0.5)
    except StartupError:
        stopping.set()
        raise
    finally:
        for w in workers:
            if w.proc.is_alive():
                w.proc.terminate()  # SIGTERM: a graceful stop, as for one process
        deadline = time.monotonic() + 35.0
        for w in workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            w.conn.close()
        if changes is not None:
            changes.close()
        reserve.close()
    return 0
