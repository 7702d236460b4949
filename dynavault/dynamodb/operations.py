"""The DynamoDB operation table: each operation module's ``HANDLERS``, bound to the context.

One registration style: a module lists its operations in ``HANDLERS = {"Name": handler}``; adding a
module here is the only step to serve its operations. An operation named twice is a startup error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from dynavault.caller import Caller

from . import auxiliary, batch, items, partiql, query, tables, transactions, ttl
from .backups import operations as backups
from .database import Database
from .streams import api as streams_api

MODULES = (tables, items, query, batch, transactions, partiql, ttl, backups, auxiliary)
#: the DynamoDB Streams front (DynamoDBStreams_20120810) has its own operation table
STREAM_MODULES = (streams_api,)

Operation = Callable[[Caller, dict], dict]


def _call(db: Database, operation: str, handler, caller: Caller, params: dict) -> dict:
    # A table's ARN is accepted wherever DynamoDB accepts it; handlers only ever see table names.
    return handler(db, caller, tables.resolve_table_names(operation, caller, params))


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
