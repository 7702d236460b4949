"""A PutItem of only ``items._PLAIN_PUT``'s members skips the legacy-parameter and expression checks: they must
have nothing to refuse and no condition to make for any such request (the full path's steps, run here on every
combination of those members, say so)."""

from __future__ import annotations

import itertools

from dynavault.dynamodb import legacy
from dynavault.dynamodb.expressions import ExpressionContext
from dynavault.dynamodb.items import _PLAIN_PUT, parse_request_condition

VALUES = {"TableName": "tbl", "Item": {"pk": {"S": "a"}}, "ReturnValues": "ALL_OLD",
          "ReturnConsumedCapacity": "TOTAL", "ReturnItemCollectionMetrics": "SIZE"}


def test_the_plain_members_leave_the_skipped_checks_nothing_to_do() -> None:
    assert set(VALUES) == _PLAIN_PUT
    for n in range(len(VALUES) + 1):
        for members in itertools.combinations(VALUES, n):
            p = {m: VALUES[m] for m in members}
            legacy.check_no_mixing(p, "PutItem")
            ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"))
            assert parse_request_condition(p, ctx, "PutItem") is None
            ctx.check_all_used()
