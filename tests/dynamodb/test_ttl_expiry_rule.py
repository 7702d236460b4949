"""Which TTL attribute values make an item expired (DynamoDB's documented rule): a Number of epoch seconds
below the current time and not more than five years in the past; nothing else."""

from __future__ import annotations

import pytest

from dynavault.dynamodb.ttl import MAX_AGE_SECONDS, expired

NOW = 1_800_000_000.25


@pytest.mark.parametrize("value, result", [
    ({"N": "1799999999"}, True),
    ({"N": "1800000000.2"}, True),
    ({"N": "1800000000.25"}, False),  # not below the current time yet
    ({"N": "1800000001"}, False),
    ({"N": "1.7999E9"}, True),
    ({"N": str(int(NOW) - MAX_AGE_SECONDS + 1)}, True),
    ({"N": str(int(NOW) - MAX_AGE_SECONDS - 1)}, False),  # more than five years ago
    ({"N": "0"}, False),
    ({"N": "-5"}, False),
    ({"N": "1800000000000"}, False),  # milliseconds: far in the future
    ({"N": "1E+125"}, False),
    ({"N": "not a number"}, False),
    ({"S": "1799999999"}, False),
    ({"NS": ["1799999999"]}, False),
    ({"L": [{"N": "1799999999"}]}, False),
    ({"M": {"N": {"N": "1799999999"}}}, False),
    ({"N": "1799999999", "S": "x"}, False),
    ({"N": 1799999999}, False),
    (None, False),
    ("1799999999", False),
])
def test_expiry_rule(value, result):
    assert expired(value, NOW) is result
