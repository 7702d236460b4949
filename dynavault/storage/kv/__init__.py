"""Key-value backends. ``base`` is the interface; ``sqlite`` the embedded default."""

from dynavault.storage.kv.base import KVStore, KVTransaction, check_value, prefix_end

__all__ = ["KVStore", "KVTransaction", "check_value", "prefix_end"]
