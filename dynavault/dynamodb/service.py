"""The DynamoDB service: one table of operation handlers over the catalog, the table keys and
the encrypted trees. Features added by later modules (indexes, streams, SSE switching) plug in
through the hook attributes instead of growing the operations themselves.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from dynavault.caller import Caller
from dynavault.config import Settings
from dynavault.errors import AWSError
from dynavault.sse.crypto import TableCrypto
from dynavault.sse.key_port import KeyPort, KeyPortError
from dynavault.sse.kms_client import InProcessKms, RemoteKms
from dynavault.sse.table_keys import TableKeyService
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.trees import EncryptedTrees

from . import epochs, item_collections, items, sse_lifecycle, tables
from .catalog import Catalog, TableMeta
from .sse_lifecycle import refuse_if_inaccessible

if TYPE_CHECKING:
    from .transactions import TransactionState

log = logging.getLogger("dynavault.dynamodb")

Handler = Callable[["DynamoDBService", Caller, dict], dict]


class DynamoDBService:
    def __init__(self, settings: Settings, kms: KeyPort, *, owned_key_arn: Callable[[str], str],
                 owned_account: str, transaction_state: TransactionState, metrics=None) -> None:
        self.settings = settings
        self.metrics = metrics
        #: claims and idempotency tokens of multi-item requests: per store, never a module global
        self.transaction_state = transaction_state
        data = settings.data_path()
        data.mkdir(parents=True, exist_ok=True)
        if settings.commit_mode not in ("group", "each"):
            raise ValueError(f"commit_mode must be 'group' or 'each', not {settings.commit_mode!r}")
        self.kv = SqliteKV(data / "tables.db", group_commit=settings.commit_mode == "group")
        self.trees = EncryptedTrees(self.kv)
        self.catalog = Catalog(self.kv)
        self.keys = TableKeyService(
            kms,
            owned_key_arn=owned_key_arn,
            owned_account=owned_account,
            refresh_seconds=settings.key_refresh_seconds,
            shared_cache=settings.shared_key_cache,
            metrics=metrics,
        )
        if metrics is not None:
            metrics.key_cache_entries.set_function(self.keys.cached_entries)
        # hooks for features that live in their own modules
        self.prepare_indexes: Callable | None = None
        self.attach_indexes: Callable = lambda meta, indexes: None
        self.describe_indexes: Callable | None = None
        self.update_indexes: Callable | None = None
        self.index_writer: Callable | None = None
        self.enable_stream: Callable | None = None
        self.stream_writer: Callable | None = None
        self.update_sse: Callable | None = None
        self._handlers: dict[str, Handler] = {**tables.HANDLERS, **items.HANDLERS}
        # issue 6 (batch/transactions/PartiQL): register the multi-item operations
        from . import batch, partiql, transactions

        self._handlers.update(batch.HANDLERS)
        self._handlers.update(transactions.HANDLERS)
        self._handlers.update(partiql.HANDLERS)
        # issue 4 (Query/Scan, secondary indexes): handlers and index hooks
        from . import indexes, query

        query.install(self)
        indexes.install(self)
        # issue 5 (key lifecycle): SSE switching, inaccessible-key sweep, archival
        self.sse_lifecycle = sse_lifecycle.install(self)

    def operations(self) -> dict[str, Callable[[Caller, dict], dict]]:
        return {name: functools.partial(self._call, name, h) for name, h in self._handlers.items()}

    def _call(self, operation: str, handler: Handler, caller: Caller, params: dict) -> dict:
        # A table's ARN is accepted wherever DynamoDB accepts it; handlers only ever see table names.
        return handler(self, caller, tables.resolve_table_names(operation, caller, params))

    def periodic_jobs(self) -> list[tuple[str, float, Callable[[], None]]]:
        return [
            ("node-epochs", self.settings.epoch_check_seconds, lambda: epochs.account_node_seals(self)),
            ("key-cache-prune", max(1.0, min(60.0, self.settings.key_refresh_seconds)), self.keys.prune),
            *self.sse_lifecycle.jobs(),  # key lifecycle (issue 5): SSE switch phases, inaccessible-key sweep
        ]

    # -- helpers the operations share -------------------------------------------------------------
    def data_table(self, caller: Caller, name: str) -> TableMeta:
        meta = self.catalog.get(caller.account, caller.region, name)
        if meta is None:
            raise AWSError("ResourceNotFoundException", "Requested resource not found")
        refuse_if_inaccessible(meta)  # key lifecycle (issue 5): no data while the table's key is unusable
        return meta

    def crypto(self, caller: Caller, meta: TableMeta) -> TableCrypto:
        return self.keys.crypto_for(caller, meta.key_ref())

    def after_write(self, tx, caller: Caller, meta: TableMeta, crypto: TableCrypto, old: dict | None,
                    new: dict | None) -> dict | None:
        """Index entries and stream records for one item change, in the write's transaction."""
        units = None
        if meta.local_indexes:
            item_collections.check_collection(tx, meta, crypto, old, new, self.settings.item_collection_max_bytes)
        if self.index_writer is not None:
            units = self.index_writer(tx, meta, crypto, old, new)
        if self.stream_writer is not None:
            self.stream_writer(tx, meta, crypto, old, new)
        return units

    def connection_closed(self, connection_id: int) -> None:
        self.keys.drop_connection(connection_id)

    def close(self) -> None:
        epochs.account_node_seals(self)
        self.kv.close()


def build_dynamodb(settings: Settings, components: dict, metrics=None) -> DynamoDBService:
    """``components``: "owned_account" (the AWS owned keys' account) and, without a KMS endpoint, "kms"."""
    owned_account = components["owned_account"]
    if settings.kms_endpoint:
        remote = RemoteKms(settings.kms_endpoint, settings.kms_access_key_id, settings.kms_secret_access_key)
        client: KeyPort = remote
        owned_arns: dict[str, str] = {}

        def owned_key_arn(region: str) -> str:
            # The remote KMS keeps the owned key under a reserved alias of the service account.
            if region not in owned_arns:
                caller = svc.keys.service_caller(owned_account, region)
                try:
                    owned_arns[region] = remote.describe_key(caller, "alias/aws/dynamodb-owned").arn
                except KeyPortError as err:  # answered as the KMS said it, as before the typed port
                    raise AWSError(err.code, err.message, err.status) from None
            return owned_arns[region]
    else:
        kms_service = components["kms"]
        client = InProcessKms(kms_service)
        owned_key_arn = kms_service.owned_key_arn
    from .transactions import TransactionState

    svc = DynamoDBService(settings, client, owned_key_arn=owned_key_arn, owned_account=owned_account,
                          transaction_state=TransactionState(), metrics=metrics)
    return svc
