"""The table store's key space has one registry (dynamodb/layout.py) and its prefixes never overlap."""

from __future__ import annotations

import ast
from pathlib import Path

import dynavault
from dynavault.dynamodb import layout

PACKAGE_ROOT = Path(dynavault.__file__).parent


def test_registered_prefixes_are_prefix_free() -> None:
    assert layout.overlapping(layout.PREFIXES) == []
    assert len(set(layout.PREFIXES.values())) == len(layout.PREFIXES)


def test_the_overlap_check_is_not_blind() -> None:
    assert layout.overlapping({"a": b"\x00\x00stats\x00", "b": b"\x00\x00stats\x00x"}) == [("a", "b")]
    assert layout.overlapping({"a": b"T", "b": b"T"}) == [("a", "b")]


def _bytes_prefix_constants(source: str) -> list[str]:
    """Module-level NAME = b"..." assignments whose name says it is a key prefix or a row key."""
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value,
                                                                                                 bytes):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.endswith(("_PREFIX", "_KEY")):
                    out.append(target.id)
    return out


def test_no_store_prefix_is_defined_outside_the_registry() -> None:
    # storage/ names its own two (tree rows, directories); the registry lists them too
    allowed = {"dynamodb/layout.py", "storage/nodes.py", "storage/directory.py"}
    found = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        rel = path.relative_to(PACKAGE_ROOT).as_posix()
        if rel in allowed or rel.startswith(("kms/", "audit/")):  # other stores, other key spaces
            continue
        found += [f"{rel}: {name}" for name in _bytes_prefix_constants(path.read_text(encoding="utf-8"))]
    assert found == []
    assert _bytes_prefix_constants('STREAM_PREFIX = b"\\x00\\x00stream\\x00"') == ["STREAM_PREFIX"]
