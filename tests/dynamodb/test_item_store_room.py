"""Only the item-change path writes item data (DESIGN.md, "One item-change path").

Read with ast: a call of a tree's write methods (``put``, ``delete``, ``slot`` — the read-for-write —
``drop``) or of a key-value transaction's ``put``/``delete`` on a row of the tree space, from any module
but the item store, would be a second write path that streams, TTL, backups and replication never see.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dynavault

PACKAGE_ROOT = Path(dynavault.__file__).parent
TREE_WRITES = {"put", "delete", "slot", "drop"}

#: modules that may call a tree's write methods, and why
ALLOWED = {
    "dynamodb/item_store.py": "the item-change path itself",
    "storage/trees.py": "the trees' own code",
    "storage/directory.py": "the partition directory is itself a tree",
    "bench/storage.py": "the in-process storage micro-benchmark, on its own throwaway store",
}


def tree_writes(source: str) -> list[tuple[int, str]]:
    """(line, call) for every ``<...>trees.<write>(...)`` call: the receiver names the trees object."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in TREE_WRITES:
            continue
        receiver = node.func.value
        name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
        if "trees" in name.lower():
            found.append((node.lineno, ast.unparse(node.func)))
    return found


def test_only_the_item_store_writes_item_data() -> None:
    found = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        rel = path.relative_to(PACKAGE_ROOT).as_posix()
        if rel in ALLOWED:
            continue
        for line, call in tree_writes(path.read_text(encoding="utf-8")):
            found.append(f"{rel}:{line} {call}")
    assert found == []


def test_the_check_sees_the_write_forms_operations_used_before() -> None:
    # The check is not blind: these are the shapes of the direct tree writes the operations made before
    # they went through the item store.
    for source in ("db.trees.put(tx, codec, tid, 0, token, key, raw)",
                   "self.db.trees.delete(tx, codec, tid, 1, token, key)",
                   "place = db.trees.slot(tx, codec, tid, 0, token, key)",
                   "trees.drop(tx, tid)"):
        assert tree_writes(source), source
    assert tree_writes("db.items.get(meta, crypto, h, s)\nd.put(1)\nsvc.catalog.put(tx, meta)") == []


def test_item_store_is_the_only_dynamodb_module_holding_the_trees() -> None:
    holders = [p.relative_to(PACKAGE_ROOT).as_posix() for p in sorted((PACKAGE_ROOT / "dynamodb").rglob("*.py"))
               if "EncryptedTrees" in p.read_text(encoding="utf-8")]
    assert holders == ["dynamodb/item_store.py"]
