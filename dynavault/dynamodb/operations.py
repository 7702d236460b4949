"""The DynamoDB operation table: each operation module's ``HANDLERS``, bound to the context.

One registration style: a module lists its operations in ``HANDLERS = {"Name": handler}``; adding a
module here is the only step to serve its operations. An operation named twice is a startup error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from dynavault.caller import Caller

from . import auxiliary, batch, items, partiql, query, tables, throughput, transactions, ttl
from .backups import operations as backups
from .database import Database
from .replication import operations as replication
from .streams import api as streams_api

MODULES = (tables, items, query, batch, transactions, partiql, ttl, backups, auxiliary, replication)
#: the DynamoDB Streams front (DynamoDBStreams_20120810) has its own operation table
STREAM_MODULES = (streams_api,)

Operation = Callable[[Caller, dict], dict]


def _call(db: Database, operation: str, handler, caller: Caller, params: dict) -> dict:
    # A table's ARN is accepted wherever DynamoDB accepts it; handlers only ever see table names.
    resolved = tables.resolve_table_names(operation, caller, params)
    if db.throughput.enabled and operation in throughput.METERED:
        result = throughput.metered(db, operation, handler, caller, resolved)
    else:
        result = handler(db, caller, resolved)
    if resolved is not params and isinstance(result, dict) and "ConsumedCapacity" in result:
        _echo_arns(params, result)
    return result


def _echo_arns(params: dict, result: dict) -> None:
    """ConsumedCapacity names a table by the ARN the request used for it (DynamoDB's documented rule)."""
    arns = {a.rsplit("/", 1)[1]: a for a in tables.named_tables(params) if a.startswith("arn:") and "/" in a}
    cc = result["ConsumedCapacity"]
    for entry in cc if isinstance(cc, list) else [cc]:
        if isinstance(entry, dict) and entry.get("TableName") in arns:
            entry["TableName"] = arns[entry["TableName"]]


def operations(db: Database) -> dict[str, Operation]:
    out: dict[str, Operation] = {}
    for module in MODULES:
        for name, handler in module.HANDLERS.items():
            if name in out:
                raise RuntimeError(f"operation {name} is registered twice (again by {module.__name__})")
            out[name] = functools.partial(_call, db, name, handler)
    return out


def stream_operations(db: Database) -> dict[str, Operation]:
    """The DynamoDB Streams operations (stream ARNs carry their table's name; no table-name overloading)."""
    out: dict[str, Operation] = {}
    for module in STREAM_MODULES:
        for name, handler in module.HANDLERS.items():
            if name in out:
                raise RuntimeError(f"operation {name} is registered twice (again by {module.__name__})")
            out[name] = functools.partial(handler, db)
    return out
