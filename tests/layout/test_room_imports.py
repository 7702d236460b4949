"""The rooms of DESIGN.md hold in the code: storage/ and sse/ never import dynamodb/.

storage/ stores opaque byte keys and sealed blobs (invariant 2) and sse/ is the table-key machinery under
DynamoDB; an import of dynavault.dynamodb from either would let DynamoDB's semantics leak downwards. Read
with ast (not by importing), so every import counts: top level, inside functions, under TYPE_CHECKING,
relative or absolute, and importlib.import_module / __import__ with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dynavault

PACKAGE_ROOT = Path(dynavault.__file__).parent
FORBIDDEN = "dynavault.dynamodb"
LOWER_ROOMS = ("storage", "sse")


def _module_name(path: Path) -> tuple[str, bool]:
    """(dotted module name, is a package __init__) of a file under the dynavault package."""
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute names an ImportFrom may bring in: the module itself and module.name for each name."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the source of ``module``."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.extend((node.lineno, name) for name in _resolve(module, is_package, node))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return out


def _forbidden(name: str) -> bool:
    return name == FORBIDDEN or name.startswith(FORBIDDEN + ".")


def room_violations(room: str) -> list[str]:
    found = []
    for path in sorted((PACKAGE_ROOT / room).rglob("*.py")):
        for line, name in imported_names(path.read_text(encoding="utf-8"), *_module_name(path)):
            if _forbidden(name):
                found.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("room", LOWER_ROOMS)
def test_lower_rooms_do_not_import_dynamodb(room: str) -> None:
    assert (PACKAGE_ROOT / room).is_dir()
    assert room_violations(room) == []


@pytest.mark.parametrize(
    "source",
    [
        "import dynavault.dynamodb.values",
        "from dynavault.dynamodb.keyorder import encode_key_value",
        "from dynavault import dynamodb",
        "from ..dynamodb import keyorder",
        "from .. import dynamodb",
        "def f():\n    from dynavault.dynamodb import numbers\n",
        "import importlib\nimportlib.import_module('dynavault.dynamodb.values')",
    ],
)
def test_the_check_sees_every_import_form(source: str) -> None:
    # The check itself must not be blind: each form is reported from a storage module and from the
    # package's __init__ (where "." is the package itself, so ".." is dynavault).
    for module, is_package in (("dynavault.storage.sealed", False), ("dynavault.storage", True)):
        names = [name for _, name in imported_names(source, module, is_package)]
        assert any(map(_forbidden, names)), (module, names)


def test_own_imports_are_not_flagged() -> None:
    source = "from .kv.base import KVStore\nfrom . import sealed\nfrom dynavault.errors import validation\n"
    names = [name for _, name in imported_names(source, "dynavault.storage.trees", False)]
    assert names and not any(map(_forbidden, names)), names


def test_storage_imports_only_itself_and_its_errors() -> None:
    # storage/ compares opaque byte keys: DynamoDB's rules (ValidationException texts, number limits) live
    # in dynamodb/. The package's own rule: from dynavault it imports only itself and dynavault.errors,
    # and never the builder of DynamoDB's ValidationException.
    found = []
    for path in sorted((PACKAGE_ROOT / "storage").rglob("*.py")):
        for line, name in imported_names(path.read_text(encoding="utf-8"), *_module_name(path)):
            if not (name == "dynavault" or name.startswith("dynavault.")):
                continue
            allowed = name.startswith(("dynavault.storage.", "dynavault.errors")) or name == "dynavault.storage"
            if not allowed or name == "dynavault.errors.validation":
                found.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{line} imports {name}")
    assert found == []
