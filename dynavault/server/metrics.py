"""Prometheus metrics, served at GET /metrics. A registry per runtime so tests can run several.

The counters bumped on every request (requests by operation, table-key cache hits) are plain numbers, turned
into Prometheus samples only when /metrics is scraped: a prometheus_client counter takes a lock per increment.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class _Cell:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class PlainCounter:
    """A labelled counter whose cells are plain floats, exposed as ``<name>_total`` at scrape time.

    Incremented only from the event loop thread (the request path), so no lock; ``labels(...)`` returns a cell
    to keep and ``inc()`` as often as needed."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: CollectorRegistry):
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self._cells: dict[tuple[str, ...], _Cell] = {}
        registry.register(self)

    def labels(self, *values: object) -> _Cell:
        key = tuple(str(v) for v in values)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells.setdefault(key, _Cell())
        return cell

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, cell in list(self._cells.items()):
            family.add_metric(key, cell.value)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = PlainCounter(
            "dynavault_requests", "Requests by service, operation and HTTP status",
            ("service", "operation", "status"), self.registry,
        )
        self.kms_calls = Counter(
            "dynavault_kms_calls", "KMS calls made by the database, by operation and outcome",
            ["operation", "outcome"], registry=self.registry,
        )
        self.key_cache = PlainCounter("dynavault_key_cache", "Table key cache lookups", ("result",), self.registry)
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
        self._request_cells: dict[tuple[str, str, int], _Cell] = {}

    def observe_request(self, service: str, operation: str, status: int) -> None:
        key = (service, operation, status)
        cell = self._request_cells.get(key)
        if cell is None:
            cell = self._request_cells[key] = self.requests.labels(service, operation, status)
        cell.value += 1

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
