"""``dynavault bench`` shows progress while it loads and runs: a bar redrawn in place on a terminal, a line per
phase on a pipe, nothing with --json."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time


def _cmd(endpoint: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dynavault.cli", "bench", "--endpoint", endpoint, "--duration", "1",
            "--items", "300", "--connections", "2", "--workloads", "get,put", *extra]


def test_progress_lines_on_a_pipe_and_quiet_with_json(srv):
    p = subprocess.run(_cmd(srv.endpoint), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert lines[0] == "loading: 300 items ..."
    assert lines[1].startswith("loading: done in ")
    assert lines[2] == "get: 1 s ..." and lines[3].startswith("get: done in ") and " ops, 0 errors" in lines[3]
    assert lines[4] == "put: 1 s ..." and lines[5].startswith("put: done in ")
    assert "| get |" in p.stdout  # the results stay on stdout
    quiet = subprocess.run(_cmd(srv.endpoint, "--json"), capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.lstrip().startswith("{")


def test_progress_bar_on_a_terminal(srv):
    """stderr on a pseudo-terminal: the bar is redrawn in place (carriage returns) and ends complete."""
    main, other = pty.openpty()
    proc = subprocess.Popen(_cmd(srv.endpoint), stdout=subprocess.PIPE, stderr=other, stdin=subprocess.DEVNULL)
    os.close(other)
    seen = b""
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the other side closed: the process is done
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.wait(60) == 0
    text = seen.decode(errors="replace")
    assert text.count("\r") >= 3, text
    assert "loading    [" + "#" * 30 + "] 300/300 items" in text
    assert "get        [" + "#" * 30 + "] 1/1 s" in text and " ops, 0 errors" in text
