"""The attribute-list registry: DAX sends an item's non-key attributes as a list id plus values in order.

Clients cache an id's names for their whole life, so an id must never change meaning: not across restarts,
not across the worker processes of one store. Ids are per scope, an account and region ("account/region": one
account cannot read another's attribute names by probing ids). Id 1 is the empty list, as the clients assume.

``AttributeLists`` holds the mapping in memory, in front of an optional ``backend`` that persists it (see
``StoreBackend`` in registry_store.py): ``backend.allocate(scope, names) -> id`` must be atomic across
processes and return the existing id for names it already holds; ``backend.load(scope, id) -> names | None``.
"""

from __future__ import annotations

import threading

EMPTY_LIST_ID = 1
#: attribute lists one account may register in one region (each distinct set of non-key attribute names is one)
MAX_LISTS_PER_SCOPE = 100_000
#: names in one list: an item holds at most 400 KB, so a few tens of thousands of attributes at most
MAX_NAMES = 65_536
#: the names of one list, UTF-8, at most DynamoDB's item size (an item cannot carry more names than this)
MAX_LIST_BYTES = 400 * 1024
#: what is kept in memory per process (a miss is read from the backend again)
_CACHE_ENTRIES = 65_536
_CACHE_BYTES = 64 * 1024 * 1024


class RegistryFull(Exception):
    """The scope holds MAX_LISTS_PER_SCOPE lists."""


def list_bytes(names: tuple[str, ...]) -> int:
    return sum(len(n.encode("utf-8", "surrogatepass")) for n in names)


class AttributeLists:
    def __init__(self, backend=None, max_per_scope: int = MAX_LISTS_PER_SCOPE) -> None:
        self.backend = backend
        self.max_per_scope = max_per_scope
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, tuple[str, ...]], int] = {}
        self._names: dict[tuple[str, int], tuple[str, ...]] = {}
        #: without a backend: the next id per scope
        self._next: dict[str, int] = {}
        self._cached_bytes = 0

    def id_for(self, scope: str, names: tuple[str, ...]) -> int:
        if not names:
            return EMPTY_LIST_ID
        key = (scope, names)
        with self._lock:
            found = self._ids.get(key)
        if found is not None:
            return found
        if self.backend is not None:
            list_id = self.backend.allocate(scope, names, self.max_per_scope)
        else:
            with self._lock:
                list_id = self._next.get(scope, EMPTY_LIST_ID + 1)
                if list_id - EMPTY_LIST_ID > self.max_per_scope:
                    raise RegistryFull()
                self._next[scope] = list_id + 1
        self._remember(scope, names, list_id)
        return list_id

    def names_for(self, scope: str, list_id: int) -> tuple[str, ...] | None:
        if list_id == EMPTY_LIST_ID:
            return ()
        with self._lock:
            found = self._names.get((scope, list_id))
        if found is not None or self.backend is None:
            return found
        names = self.backend.load(scope, list_id)
        if names is not None:
            self._remember(scope, names, list_id)
        return names

    def _remember(self, scope: str, names: tuple[str, ...], list_id: int) -> None:
        size = list_bytes(names)
        with self._lock:
            if len(self._names) >= _CACHE_ENTRIES or self._cached_bytes + size > _CACHE_BYTES:
                self._names.clear()
                self._ids.clear()
                self._cached_bytes = 0
            self._cached_bytes += size
            self._ids[(scope, names)] = list_id
            self._names[(scope, list_id)] = names
