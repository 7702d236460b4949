"""Prometheus metrics, served at GET /metrics. A registry per runtime so tests can run several.

With several workers each keeps its own numbers and publishes them to a file beside the others' (a
process-scope periodic job); /metrics, in whichever worker answers, adds its own live numbers to the
others' last published ones, so a scrape sees the whole server (``WorkerMetrics``).

The counters bumped on every request (requests by operation, table-key cache hits) are plain numbers, turned
into Prometheus samples only when /metrics is scraped: a prometheus_client counter takes a lock per increment.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

#: gauges that describe the store, not the process: every worker reports the same value, so it is not summed
STORE_WIDE = frozenset({"dynavault_tables"})


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


class ThreadCellCounter(PlainCounter):
    """A labelled counter bumped from several threads without a lock: ``labels(...)`` hands out a new cell on
    every call, each one kept and incremented by one thread only (so no two threads ever write one float), and
    a scrape adds up the cells of each label set."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: CollectorRegistry):
        self._per_key: dict[tuple[str, ...], list[_Cell]] = {}
        super().__init__(name, documentation, labelnames, registry)

    def labels(self, *values: object) -> _Cell:
        key = tuple(str(v) for v in values)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        cell = _Cell()
        # setdefault and append are single steps under the GIL: threads asking at once each get their cell in
        self._per_key.setdefault(key, []).append(cell)
        return cell

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, cells in list(self._per_key.items()):
            family.add_metric(key, sum(c.value for c in list(cells)))
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
        # bumped by every write, from the event loop and from background jobs' threads (TTL, restores)
        self.item_changes = ThreadCellCounter(
            "dynavault_item_changes", "Item changes committed, by cause (the operation or system job) and event",
            ("cause", "event"), self.registry,
        )
        self.faults_injected = Counter(
            "dynavault_faults_injected", "Faults injected (DynavaultAdmin.PutFault, --faults)",
            ["operation", "error"], registry=self.registry,
        )
        # bumped from handler threads too, and rarely: a locked counter
        self.throttled = Counter(
            "dynavault_throttled_requests", "Requests refused over provisioned throughput, by table and GSI",
            ["table", "index"], registry=self.registry,
        )
        self.replication_latency = Histogram(
            "dynavault_replication_latency_seconds",
            "Global tables: time from a write in one region to its application in another (ReplicationLatency)",
            ["source_region", "target_region"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0),
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


class _Families:
    """A collector that yields already-built metric families (the merged ones)."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self) -> Iterator:
        yield from self.families


def merge(texts: list[bytes]) -> bytes:
    """Prometheus text of several processes as one: samples with the same name and labels added up (first
    text first; a store-wide gauge keeps the first text's value)."""
    families: dict[str, object] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text.decode()):
            have = families.get(fam.name)
            if have is None:
                families[fam.name] = fam
                continue
            if fam.name in STORE_WIDE:
                continue
            index = {(smp.name, tuple(sorted(smp.labels.items()))): i for i, smp in enumerate(have.samples)}
            for smp in fam.samples:
                i = index.get((smp.name, tuple(sorted(smp.labels.items()))))
                if smp.name.endswith("_created") and i is not None:
                    continue  # a creation time, not a count: the first one stays
                if i is None:
                    have.samples.append(smp)
                else:
                    old = have.samples[i]
                    have.samples[i] = Sample(old.name, old.labels, old.value + smp.value, old.timestamp, old.exemplar)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


class WorkerMetrics:
    """One worker's side of the shared /metrics: publish this worker's numbers; render everyone's."""

    def __init__(self, metrics: Metrics, directory: pathlib.Path, index: int, *, clear: bool = False) -> None:
        self.metrics = metrics
        self.directory = directory
        self.index = index
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if clear:  # the first worker of a start: numbers of an earlier start (or of more workers) are gone
            for old in directory.glob("*worker-*"):
                old.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"WorkerMetrics({self.index})"

    def _path(self, index: int) -> pathlib.Path:
        return self.directory / f"worker-{index}.prom"

    def publish(self) -> None:
        tmp = self.directory / f".worker-{self.index}.tmp"
        tmp.write_bytes(generate_latest(self.metrics.registry))
        os.replace(tmp, self._path(self.index))

    def render(self) -> tuple[bytes, str]:
        texts = [generate_latest(self.metrics.registry)]
        for path in sorted(self.directory.glob("worker-*.prom")):
            if path != self._path(self.index):
                try:
                    texts.append(path.read_bytes())
                except FileNotFoundError:
                    continue
        return merge(texts), CONTENT_TYPE_LATEST
