"""The console's only way to do anything: the same operation handlers the HTTP API dispatches to, called with a
Caller built for the signed-in principal. No operation has a second implementation here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from dynavault.caller import Caller

#: (service, operation, caller, params) -> response; service is "dynamodb", "kms" or "cloudtrail". The runtime
#: builds it from its route table: validation of the request's shape, then the operation's handler.
Invoke = Callable[[str, str, Caller, dict], dict]


class Calls:
    """One page's calls, as one principal (account, region, principal ARN) through one connection."""

    def __init__(self, invoke: Invoke, caller: Caller) -> None:
        self._invoke = invoke
        self.caller = caller

    def _call(self, service: str, operation: str, params: dict) -> dict:
        # Handlers may answer with pre-serialized parts (items as orjson fragments): the console reads the
        # response as a client would, after the same serialization the wire uses.
        return orjson.loads(orjson.dumps(self._invoke(service, operation, self.caller, params)))

    def ddb(self, operation: str, **params: Any) -> dict:
        return self._call("dynamodb", operation, params)

    def kms(self, operation: str, **params: Any) -> dict:
        return self._call("kms", operation, params)

    def trail(self, operation: str, **params: Any) -> dict:
        return self._call("cloudtrail", operation, params)

    def table_names(self) -> list[str]:
        names: list[str] = []
        start: str | None = None
        while True:
            params: dict[str, Any] = {"Limit": 100}
            if start:
                params["ExclusiveStartTableName"] = start
            page = self.ddb("ListTables", **params)
            names.extend(page.get("TableNames", []))
            start = page.get("LastEvaluatedTableName")
            if not start:
                return names

    def key_ids(self) -> list[dict]:
        keys: list[dict] = []
        marker: str | None = None
        while True:
            page = self.kms("ListKeys", Limit=1000, **({"Marker": marker} if marker else {}))
            keys.extend(page.get("Keys", []))
            marker = page.get("NextMarker") if page.get("Truncated") else None
            if not marker:
                return keys

    def aliases(self) -> list[dict]:
        out: list[dict] = []
        marker: str | None = None
        while True:
            page = self.kms("ListAliases", Limit=100, **({"Marker": marker} if marker else {}))
            out.extend(page.get("Aliases", []))
            marker = page.get("NextMarker") if page.get("Truncated") else None
            if not marker:
                return out

    def events(self, *, attribute: tuple[str, str] | None = None, max_pages: int = 20,
               start_time: float | None = None) -> list[dict]:
        """LookupEvents, newest first, at most ``max_pages`` pages of 50."""
        out: list[dict] = []
        token: str | None = None
        params: dict[str, Any] = {"MaxResults": 50}
        if attribute is not None:
            params["LookupAttributes"] = [{"AttributeKey": attribute[0], "AttributeValue": attribute[1]}]
        if start_time is not None:
            params["StartTime"] = start_time
        for _ in range(max_pages):
            page = self.trail("LookupEvents", **params, **({"NextToken": token} if token else {}))
            out.extend(page.get("Events", []))
            token = page.get("NextToken")
            if not token:
                break
        return out
