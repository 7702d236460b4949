"""The package as a user gets it: build the wheel and the sdist from a copy of the source (offline: the
installed setuptools, no build isolation, no index), install the wheel into a fresh virtualenv and start
``dynavault serve`` from it until it is ready."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import dynavault

REPO = Path(__file__).resolve().parents[2]
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1"}


#: Debian's python3-wheel (pure Python), for a machine whose interpreter has no ``wheel`` of its own
DEBIAN_WHEEL = Path("/usr/lib/python3/dist-packages")


def _wheel_path(tmp: Path) -> str | None:
    """A PYTHONPATH entry that gives setuptools its bdist_wheel command, offline; None if none is needed
    (``wheel`` importable, or a setuptools that has bdist_wheel itself). Skips when there is no way."""
    probe = "import importlib.util, setuptools; v = tuple(int(x) for x in setuptools.__version__.split('.')[:2]); " \
            "print(int(bool(importlib.util.find_spec('wheel')) or v >= (70, 1)))"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "1":
        return None
    found = sorted(DEBIAN_WHEEL.glob("wheel-*.egg-info")) + sorted(DEBIAN_WHEEL.glob("wheel-*.dist-info"))
    if not (DEBIAN_WHEEL / "wheel").is_dir() or not found:
        pytest.skip("no offline way to build a wheel: install `wheel` (it is in the `test` extra)")
    shim = tmp / "wheel-shim"  # only the wheel package, not the rest of Debian's dist-packages
    shim.mkdir()
    (shim / "wheel").symlink_to(DEBIAN_WHEEL / "wheel")
    (shim / found[-1].name).symlink_to(found[-1])
    return str(shim)


def _run(cmd: list[str], cwd: Path, timeout: float = 120, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE}
    env.pop("PYTHONPATH", None)  # nothing from the source tree: only what was installed
    if path:
        env["PYTHONPATH"] = path
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """(wheel, sdist) built from a copy of the source, so the build leaves nothing in the worktree."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "dynavault", src / "dynavault", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    path = _wheel_path(tmp)
    # no build isolation: it would fetch setuptools from an index; the installed one builds this project
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(dist)], src,
         path=path)
    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"], src,
         path=path)
    [wheel] = dist.glob("dynavault-*.whl")
    [sdist] = dist.glob("dynavault-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist, "tmp": tmp}


def test_wheel_and_sdist_hold_the_package_license_and_metadata(built):
    version = dynavault.__version__
    assert built["wheel"].name == f"dynavault-{version}-py3-none-any.whl"
    with zipfile.ZipFile(built["wheel"]) as whl:
        names = set(whl.namelist())
        info = f"dynavault-{version}.dist-info"
        metadata = whl.read(f"{info}/METADATA").decode()
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    source = {str(p.relative_to(REPO)) for p in (REPO / "dynavault").rglob("*.py")}
    assert source <= names, sorted(source - names)[:10]
    assert "dynavault/dynamodb/README.md" in names
    assert f"{info}/LICENSE" in names
    assert not [n for n in names if n.startswith("tests/") or n.endswith(".pyc")]
    assert "dynavault = dynavault.cli:main" in entry_points
    for line in ("License: Apache-2.0", "Classifier: License :: OSI Approved :: Apache Software License",
                 "Project-URL: Homepage, ", "Requires-Python: >=3.11", "Requires-Dist: cryptography"):
        assert line in metadata, line
    with tarfile.open(built["sdist"]) as sd:
        members = {m.name.split("/", 1)[1] for m in sd.getmembers() if "/" in m.name}
    assert {"LICENSE", "README.md", "pyproject.toml", "dynavault/cli.py", "dynavault/server/app.py"} <= members


def test_wheel_installs_into_a_fresh_venv_and_serves(built):
    tmp = built["tmp"]
    venv = tmp / "venv"
    # no pip of its own (ensurepip is ~5-8 s): with the system site packages its python runs the system's pip,
    # which installs into the venv it runs in
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp)
    py, exe = venv / "bin" / "python", venv / "bin" / "dynavault"
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(built["wheel"])], tmp)
    run_dir = tmp / "run"  # not the source tree: the import must come from the venv
    run_dir.mkdir()
    where = _run([str(py), "-c", "import dynavault; print(dynavault.__file__)"], run_dir).stdout.strip()
    assert where.startswith(str(venv)), where
    assert _run([str(exe), "--version"], run_dir).stdout.strip() == f"dynavault {dynavault.__version__}"
    env = {**os.environ, "HOME": str(tmp / "home")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([str(exe), "serve", "--port", "0", "--data-dir", str(tmp / "data"),
                             "--allow-any-credentials"], cwd=run_dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        line = ""
        while not line.startswith("dynavault listening on "):
            assert time.time() < deadline
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
        endpoint = line.split(" on ", 1)[1].split()[0]
        import boto3

        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="pkg", aws_secret_access_key="pkg")
        assert ddb.list_tables()["TableNames"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read()
    assert (tmp / "data" / "tables.db").is_file()
