"""No module-level mutable state in dynavault/ (issue 13 item 8; DESIGN.md "Processes and state").

State that outlives a request lives in the store or in an object the runtime owns (built by
``server.runtime.build_runtime``), so two servers in one process
share nothing and the state has one obvious place to move into the store when workers arrive.

The check reads every module with ``ast`` (nothing is imported) and flags, at module level:
- a lock, counter, iterator, queue, weak map, RNG or ``collections`` container (``threading.Lock()``,
  ``itertools.count()``, ``iter(...)``, ``deque()``, ``WeakValueDictionary()``, ...);
- a dict / list / set (display, comprehension or ``dict()``-style call) bound to a name that is not an
  UPPER_CASE constant, or an UPPER_CASE one that some module mutates (``X[k] = v``, ``X.append(...)``,
  ``del X[k]``, ``X |= ...``);
- an instance of one of our own classes (a singleton), unless the class is a frozen dataclass, a NamedTuple
  or an Enum;
- a ``functools.cache`` / ``lru_cache`` on a module-level function;
- a ``global`` statement anywhere, and a mutable class attribute (shared by every instance).
Frozen things (tuples, frozensets, ``MappingProxyType``), compiled regexes, ``struct.Struct``, loggers,
``__all__`` and dataclass ``field(default_factory=...)`` defaults are constants and pass. What remains
allowed beyond that is listed in ALLOWED with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "dynavault"

#: name -> why it may stay a module global (names, not paths: a constant keeps its exemption when moved)
ALLOWED: dict[str, str] = {}

_MUTABLE_FACTORIES = frozenset({
    # locks and synchronisation
    "Lock", "RLock", "Condition", "Event", "Semaphore", "BoundedSemaphore", "Barrier", "local",
    # counters, iterators, RNGs
    "count", "iter", "Random", "SystemRandom",
    # collections, queues, weak maps
    "defaultdict", "OrderedDict", "deque", "Counter", "ChainMap", "bytearray",
    "Queue", "SimpleQueue", "LifoQueue", "PriorityQueue",
    "WeakValueDictionary", "WeakKeyDictionary", "WeakSet",
})
_CONTAINER_CALLS = frozenset({"dict", "list", "set"})
_MUTATORS = frozenset({
    "append", "extend", "insert", "remove", "pop", "popitem", "clear", "update", "setdefault", "add",
    "discard", "sort", "reverse", "difference_update", "intersection_update", "symmetric_difference_update",
    "__setitem__", "__delitem__",
})
_CACHE_DECORATORS = frozenset({"cache", "lru_cache", "cached"})


def _callee(node: ast.AST) -> str | None:
    func = node.func if isinstance(node, ast.Call) else node
    if isinstance(func, ast.Call):  # lru_cache(maxsize=...)(f), Lock()() ...
        return _callee(func)
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _is_container(value: ast.AST) -> bool:
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return True
    return isinstance(value, ast.Call) and _callee(value) in _CONTAINER_CALLS


def _immutable_classes(trees: dict[str, ast.Module]) -> tuple[set[str], set[str]]:
    """(all class names defined in the package, those whose instances are immutable values)."""
    classes: set[str] = set()
    frozen: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            classes.add(node.name)
            bases = {_callee(b) for b in node.bases}
            if bases & {"NamedTuple", "Enum", "IntEnum", "StrEnum"}:
                frozen.add(node.name)
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and _callee(d) == "dataclass" and any(
                    k.arg == "frozen" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in d.keywords
                ):
                    frozen.add(node.name)
    return classes, frozen


def _mutated_names(trees: dict[str, ast.Module]) -> set[str]:
    """Names (bare or as ``module.NAME``) that some module subscript-assigns, deletes from or mutates."""
    out: set[str] = set()

    def name_of(expr: ast.AST) -> str | None:
        if isinstance(expr, ast.Name):
            return expr.id
        if isinstance(expr, ast.Attribute):
            return expr.attr
        return None

    for tree in trees.values():
        for node in ast.walk(tree):
            targets: list[ast.AST] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            elif isinstance(node, ast.Delete):
                targets = node.targets
            for t in targets:
                if isinstance(t, ast.Subscript) and (n := name_of(t.value)):
                    out.add(n)
                elif isinstance(node, ast.AugAssign) and (n := name_of(t)):
                    out.add(n)  # X |= {...}, X += [...] on a module constant
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in _MUTATORS and (n := name_of(node.func.value)):
                out.add(n)
    return out


def _top_level(body: list[ast.stmt]):
    """The statements that run at import: the module's own, including inside if / try / with blocks."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for block in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", []),
                          *(h.body for h in getattr(node, "handlers", []))):
                yield from _top_level(block)


def _class_state(path: str, tree: ast.Module, mutated: set[str]) -> list[str]:
    """Mutable class attributes: shared by every instance, so module state in disguise."""
    found = []
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        for node in cls.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if value is None:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            called = _callee(value) if isinstance(value, ast.Call) else None
            if called in _MUTABLE_FACTORIES or (
                _is_container(value) and not (all(n.lstrip("_").isupper() for n in names) and not set(names) & mutated)
            ):
                found.append(f"{path}:{node.lineno}: {cls.name}.{', '.join(names)}: a mutable class attribute")
    return found


def module_state(trees: dict[str, ast.Module]) -> list[str]:
    """Every module-level mutable state in ``trees`` (path -> parsed module), as 'path:line: name: why'."""
    classes, frozen = _immutable_classes(trees)
    mutated = _mutated_names(trees)
    found: list[str] = []
    for path, tree in sorted(trees.items()):
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                found.append(f"{path}:{node.lineno}: global {', '.join(node.names)}: writes module state")
        found += _class_state(path, tree, mutated)
        for node in _top_level(tree.body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if any(_callee(d) in _CACHE_DECORATORS for d in node.decorator_list) and node.name not in ALLOWED:
                    found.append(f"{path}:{node.lineno}: {node.name}: a process-wide cache on a module function")
                continue
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            if not names or all(n in ALLOWED or n == "__all__" for n in names):
                continue
            label = ", ".join(names)
            called = _callee(value) if isinstance(value, ast.Call) else None
            if called in _MUTABLE_FACTORIES or (called in _CACHE_DECORATORS):
                found.append(f"{path}:{node.lineno}: {label}: {called}() at module level")
            elif _is_container(value):
                constant = all(n.lstrip("_").isupper() for n in names)
                if not constant:
                    found.append(f"{path}:{node.lineno}: {label}: a mutable container in a lower-case global")
                elif set(names) & mutated:
                    found.append(f"{path}:{node.lineno}: {label}: a module constant that code mutates")
            elif called in classes and called not in frozen:
                found.append(f"{path}:{node.lineno}: {label}: a module-level {called} instance (a singleton)")
    return found


def _parse(sources: dict[str, str]) -> dict[str, ast.Module]:
    return {path: ast.parse(text, path) for path, text in sources.items()}


def test_no_module_level_mutable_state_in_dynavault():
    trees = {str(p.relative_to(PACKAGE.parent)): ast.parse(p.read_text(), str(p)) for p in PACKAGE.rglob("*.py")}
    assert len(trees) > 50
    found = module_state(trees)
    assert not found, ("module-level state; move it into an object the runtime owns (or the store), "
                       "or into ALLOWED with a reason:\n  " + "\n  ".join(found))


BAD = {
    "_cache = {}": "_cache",
    "_close_listeners: list = []": "_close_listeners",
    "_seen = set()": "_seen",
    "_lock = threading.Lock()": "_lock",
    "_rlock = RLock()": "_rlock",
    "_ids = itertools.count(1)": "_ids",
    "_owner_ids = iter(range(1, 2**62))": "_owner_ids",
    "_by_id = weakref.WeakValueDictionary()": "_by_id",
    "_recent = collections.deque(maxlen=10)": "_recent",
    "_hits = Counter()": "_hits",
    "CLAIMS = ItemClaims()": "CLAIMS",
    "REGISTRY = {}\ndef register(k, v):\n    REGISTRY[k] = v": "REGISTRY",
    "LISTENERS = []\ndef listen(f):\n    LISTENERS.append(f)": "LISTENERS",
    "@functools.lru_cache(maxsize=None)\ndef lookup(k):\n    return k": "lookup",
    "n = 0\ndef bump():\n    global n\n    n += 1": "global n",
    "try:\n    import x\nexcept ImportError:\n    _fallback = {}": "_fallback",
    "class Pool:\n    _instances = {}": "Pool._instances",
    "class Pool:\n    _guard = threading.Lock()": "Pool._guard",
}
GOOD = [
    "__all__ = ['a', 'b']",
    "TABLE = {'a': 1}",
    "_FLIP = {'<': '>'}",
    "NAMES = frozenset({'a'})",
    "VIEW = MappingProxyType({'a': 1})",
    "PATTERN = re.compile('x+')",
    "HEADER = struct.Struct('>q')",
    "log = logging.getLogger('x')",
    "KINDS = ('Put', 'Delete')",
    "FRONT = Front('dynamodb')",
    "LIMIT = 16 * 1024",
    "class Proto:\n    timeout: float = 60.0\n    KINDS = {'a': 1}",
]
_CLASSES = ("class ItemClaims:\n    pass\n"
            "@dataclass(frozen=True)\nclass Front:\n    name: str\n"
            "@dataclass\nclass Row:\n    tags: list = field(default_factory=list)\n")


def test_the_check_flags_each_kind_of_module_state():
    for source, name in BAD.items():
        found = module_state(_parse({"classes.py": _CLASSES, "m.py": source}))
        assert len(found) == 1 and name in found[0] and found[0].startswith("m.py:"), (source, found)


def test_the_check_passes_constants():
    found = module_state(_parse({"classes.py": _CLASSES, "m.py": "\n".join(GOOD)}))
    assert found == []


# -- the moved state is per store ------------------------------------------------------------------
def _service(tmp_path, name: str):
    from dynavault.config import Settings
    from dynavault.server.runtime import build_runtime

    runtime = build_runtime(Settings(data_dir=str(tmp_path / name), root_key_file=str(tmp_path / "root.key"),
                                     allow_any_credentials=True))
    return runtime


def test_two_stores_in_one_process_share_no_idempotency_tokens(tmp_path):
    """A ClientRequestToken used against one store says nothing about another (it was one process-wide
    table: the second store answered the replay and wrote nothing)."""
    from dynavault.caller import Caller

    caller = Caller(account="123456789012", region="us-east-1", principal_arn="arn:aws:iam::123456789012:root",
                    connection_id=1)
    request = {"ClientRequestToken": "same-token", "TransactItems": [
        {"Put": {"TableName": "tokens", "Item": {"pk": {"S": "a"}}}}]}
    from dynavault.dynamodb.operations import operations

    runtimes = [_service(tmp_path, "one"), _service(tmp_path, "two")]
    services = [r.components["dynamodb"] for r in runtimes]
    try:
        for db in services:
            ops = operations(db)
            ops["CreateTable"](caller, {"TableName": "tokens", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                                        "BillingMode": "PAY_PER_REQUEST"})
            ops["TransactWriteItems"](caller, request)
            assert "Item" in ops["GetItem"](caller, {"TableName": "tokens", "Key": {"pk": {"S": "a"}}})
        assert services[0].transaction_state is not services[1].transaction_state
    finally:
        for runtime in runtimes:
            runtime.close()
