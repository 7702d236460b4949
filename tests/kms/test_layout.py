"""The key service's layout: audit/ stays below kms/, modules stay small, no private names cross modules."""

from __future__ import annotations

import ast
import pathlib

import dynavault

PACKAGE = pathlib.Path(dynavault.__file__).parent


def _imports(path: pathlib.Path) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def test_audit_never_imports_kms() -> None:
    for path in sorted((PACKAGE / "audit").glob("*.py")):
        for module, _names in _imports(path):
            assert not module.startswith("dynavault.kms"), f"{path.name} imports {module}"


def test_kms_modules_are_small_and_share_only_public_names() -> None:
    for path in sorted((PACKAGE / "kms").glob("*.py")):
        assert len(path.read_text().splitlines()) <= 600, f"{path.name} is over 600 lines"
        for module, names in _imports(path):
            if module.startswith("dynavault"):
                private = [n for n in names if n.startswith("_")]
                assert not private, f"{path.name} imports private {private} from {module}"


def test_one_operations_table() -> None:
    from dynavault.kms.service import OPERATIONS

    assert len(OPERATIONS) == 33
    assert all(callable(handler) for handler in OPERATIONS.values())
