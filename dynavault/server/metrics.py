"""Prometheus metrics, served at GET /metrics. A registry per runtime so tests can run several."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "dynavault_requests", "Requests by service, operation and HTTP status",
            ["service", "operation", "status"], registry=self.registry,
        )
        self.kms_calls = Counter(
            "dynavault_kms_calls", "KMS calls made by the database, by operation and outcome",
            ["operation", "outcome"], registry=self.registry,
        )
        self.key_cache = Counter(
            "dynavault_key_cache", "Table key cache lookups", ["result"], registry=self.registry,
        )
        self.key_refresh_failures = Counter(
            "dynavault_key_refresh_failures", "Table key refreshes that failed", registry=self.registry,
        )
        self.key_cache_entries = Gauge(
            "dynavault_key_cache_entries", "Table keys cached (per connection and table)", registry=self.registry,
        )
        self.tables_by_sse = Gauge(
            "dynavault_tables", "Tables by SSE status", ["sse_status"], registry=self.registry,
        )
        self.store_commits = Gauge(
            "dynavault_store_commits", "Store transactions committed", registry=self.registry,
        )
        self.store_durable_commits = Gauge(
            "dynavault_store_durable_commits", "Store transactions known to be on disk", registry=self.registry,
        )
        self.store_syncs = Gauge(
            "dynavault_store_group_syncs", "fsyncs made by group commit (each covers every commit before it)",
            registry=self.registry,
        )
        self.audit_write_failures = Counter(
            "dynavault_audit_write_failures", "Audit events dropped because the trail could not be appended",
            registry=self.registry,
        )
        self.item_changes = Counter(
            "dynavault_item_changes", "Item changes committed, by cause (the operation or system job) and event",
            ["cause", "event"], registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], object] = {}

    def observe_request(self, service: str, operation: str, status: int) -> None:
        key = (service, operation, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(service, operation, str(status))
            self._request_children[key] = child
        child.inc()  # type: ignore[attr-defined]

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
