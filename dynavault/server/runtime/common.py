"""What the runtime's builders share: the files of a data dir the processes share, the service fronts, and
the periodic job record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dynavault.config import Settings

from ..app import JSON_10, JSON_11, ServiceFront

#: the shared change counters of the processes serving one data dir (storage/signal.py)
CHANGES_FILE = "changes"
#: the catalog's cross-process lock (with workers)
CATALOG_LOCK_FILE = "catalog.lock"
#: queues the workers' store write transactions (storage/kv/sqlite.py)
WRITER_LOCK_FILE = "writer.lock"
#: each worker's last published metrics (no user data: operation names and counts)
METRICS_DIR = "metrics"
#: --enforce-throughput's token buckets, shared by the workers (digests of table ids and numbers)
THROUGHPUT_FILE = "throughput"

DYNAMODB = ServiceFront("dynamodb", "DynamoDB_20120810", "dynamodb", "com.amazonaws.dynamodb.v20120810#", JSON_10)
STREAMS = ServiceFront("dynamodbstreams", "DynamoDBStreams_20120810", "dynamodb",
                       "com.amazonaws.dynamodb.v20120810#", JSON_10)
KMS = ServiceFront("kms", "TrentService", "kms", "", JSON_11)
#: the test-suite helpers (server/admin.py): signed as DynamoDB requests
ADMIN = ServiceFront("dynavaultadmin", "DynavaultAdmin", "dynamodb", "com.amazonaws.dynamodb.v20120810#", JSON_10)
#: the DAX control plane (dax/control.py); DAX's data plane has listeners of its own. Its faults are
#: ``elmo.admin#...`` on the wire (DAX's own model namespace; its two generic exceptions are Coral's)
DAX = ServiceFront("dax", "AmazonDAXV3", "dax", "elmo.admin#", JSON_11)
CLOUDTRAIL = ServiceFront("cloudtrail", "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101", "cloudtrail",
                          "com.amazonaws.cloudtrail.v20131101#", JSON_11)


#: what global-table members in other servers call (dynamodb/replication/remote.py), signed as DynamoDB
REPLICATION = ServiceFront("dynavaultreplication", "DynavaultReplication", "dynamodb",
                           "com.amazonaws.dynamodb.v20120810#", JSON_10)


def served_regions(settings: Settings) -> frozenset[str]:
    return frozenset(r.strip() for r in settings.regions.split(",") if r.strip())


@dataclass
class Periodic:
    name: str
    interval: float
    run: Callable[[], None]
    #: "store": once per store (with workers, by the holder of the background lease); "process": in every one
    scope: str = "store"
    #: run in a thread (a job that waits on a remote KMS must not stall the event loop)
    thread: bool = False


#: the lease under which a worker runs the store-wide periodic jobs
BACKGROUND = "background"
