"""DESIGN.md's layout holds in the code: no room imports upward, dynamodb/ has no import cycles, and no
module imports another module's private names.

Read with ast, so every import counts (top level, inside functions, under TYPE_CHECKING for the room
rule; the cycle rule leaves out TYPE_CHECKING imports, which never run).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import dynavault

PACKAGE_ROOT = Path(dynavault.__file__).parent
LEAVES = {"errors", "caller", "config", "logsafe", "small_ints", "timestamps"}  # shared vocabulary: import nothing above themselves
#: room -> the rooms it may import (besides itself and the leaves), as DESIGN.md's layout table says
MAY_IMPORT = {
    "storage": set(),
    "audit": set(),
    "kms": {"audit"},
    "sse": {"kms", "storage"},
    "dynamodb": {"sse", "storage"},
    "server": {"dynamodb", "sse", "kms", "audit", "storage", "console", "dax"},
    # the DAX data and control planes run DynamoDB's operations (the certificates are sealed like key material)
    "dax": {"dynamodb", "sse", "storage"},
    # the console reaches the services only through the operation callable the runtime hands it
    "console": set(),
    # tools over a stopped data dir and the load generator: outside the server's rooms
    "offline": {"dynamodb", "sse", "kms", "storage"},
    "verify": {"offline", "dynamodb", "sse", "storage"},
    "upgrade": {"offline", "dynamodb", "sse", "storage"},
    "bench": {"sse", "storage"},
    "export_tool": {"offline", "dynamodb", "sse", "storage"},
    "cli": {"server", "bench", "verify", "upgrade", "export_tool"},
}


def _module(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return ids


def imports(source: str, module: str, is_package: bool, *, runtime_only: bool = False):
    """(line, imported module, imported names) for each dynavault import in ``source``."""
    tree = ast.parse(source)
    skip = _type_checking_nodes(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target, [a.name for a in node.names]


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _files():
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        module, is_package = _module(path)
        yield path, module, is_package, path.read_text(encoding="utf-8")


def upward_imports(module: str, is_package: bool, source: str) -> list[str]:
    room = _room(module)
    found = []
    for line, target, names in imports(source, module, is_package):
        if not target.startswith("dynavault"):
            continue
        targets = [target] if target != "dynavault" else [f"dynavault.{n}" for n in names]
        for t in targets:
            other = _room(t)
            if other in (room, "") or other in LEAVES:
                continue
            if room in LEAVES or other not in MAY_IMPORT.get(room, set()):
                found.append(f"{module}:{line} imports {t}")
    return found


def test_no_room_imports_upward() -> None:
    found = []
    for _, module, is_package, source in _files():
        found += upward_imports(module, is_package, source)
    assert found == []


def test_the_room_check_is_not_blind() -> None:
    assert upward_imports("dynavault.storage.trees", False, "from dynavault.dynamodb import keys")
    assert upward_imports("dynavault.sse.crypto", False, "def f():\n    from ..dynamodb.catalog import TableMeta")
    assert upward_imports("dynavault.dynamodb.items", False, "from dynavault.server import app")
    assert upward_imports("dynavault.errors", False, "from dynavault.storage import trees")
    assert upward_imports("dynavault.kms.ops_keys", False, "from dynavault import dynamodb")
    assert not upward_imports("dynavault.dynamodb.items", False, "from dynavault.sse.crypto import TableCrypto")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The non-trivial strongly connected components of ``graph`` (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def dynamodb_graph() -> dict[str, set[str]]:
    modules = {m for _, m, _, _ in _files() if m.startswith("dynavault.dynamodb")}
    graph: dict[str, set[str]] = defaultdict(set)
    for _, module, is_package, source in _files():
        if module not in modules:
            continue
        for _, target, names in imports(source, module, is_package, runtime_only=True):
            for t in [target] + [f"{target}.{n}" for n in names]:
                if t in modules and t != module and not (is_package and t.startswith(module + ".")):
                    graph[module].add(t)
    return graph


def test_dynamodb_has_no_import_cycles() -> None:
    assert _cycles(dynamodb_graph()) == []


def test_the_cycle_check_is_not_blind() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def private_imports(module: str, is_package: bool, source: str) -> list[str]:
    found = []
    for line, target, names in imports(source, module, is_package):
        if target.startswith("dynavault") and target != module:
            found += [f"{module}:{line} imports {target}.{n}" for n in names if n.startswith("_")
                      and not n.startswith("__")]
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    found = []
    for _, module, is_package, source in _files():
        found += private_imports(module, is_package, source)
    assert found == []
    assert private_imports("dynavault.dynamodb.query", False, "from .expressions.keycond import _single")
