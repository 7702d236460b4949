"""The hot requests' shortcut past the shape walk (server/plain_requests.py) answers exactly as the walk does.

Every body below — plain ones and ones one step off in a member the shortcut looks at — is validated twice: by
the server's validator (shortcut on) and by one whose shortcut is off; the two must agree on the result or on
the error's code, type and text.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynavault.errors import AWSError
from dynavault.server.plain_requests import PLAIN_MEMBERS, plain_request
from dynavault.server.shapes import ShapeValidator


@pytest.fixture(scope="module")
def pair() -> tuple[ShapeValidator, ShapeValidator]:
    fast = ShapeValidator("dynamodb")
    walk = ShapeValidator("dynamodb")
    walk._plain = {}
    return fast, walk


def _outcome(v: ShapeValidator, op: str, body: dict):
    try:
        return "ok", v.validate(op, copy.deepcopy(body))
    except AWSError as e:
        return "error", (e.code, e.type_prefix, e.status, e.message)


GET = {"TableName": "tbl-1", "Key": {"pk": {"S": "p1"}, "sk": {"N": "12"}}}
PUT = {"TableName": "tbl-1", "Item": {"pk": {"S": "p1"}, "sk": {"S": "s1"}, "gk": {"S": "g1"}, "n": {"N": "7"},
                                     "data": {"S": "x" * 964}}}
QUERY = {"TableName": "tbl-1", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "x"}}}

#: a value for each member the shortcut knows, plain or a step off
ODD = [None, "", "ab", "a" * 256, "x" * 1025, "arn:aws:dynamodb:us-east-1:123456789012:table/t", "bad name!", 0, -1,
       2**31, 2**31 - 1, 1.5, True, False, [], {}, {"pk": None}, {"pk": {"S": None}}, {"pk": {"S": 1}},
       {"pk": {"S": "a", "N": "1"}}, {"pk": {"B": "AAAA"}}, {"pk": {"B": "not base64"}}, {"pk": {"NULL": True}},
       {"k" * 256: {"S": "v"}}, {":p": {"S": "v"}}, {"#n": "name"}, {"#n": ""}, {"#n": 5}, "TOTAL", "COUNT", "NOPE"]
MEMBERS = ["TableName", "Key", "ConsistentRead", "ReturnConsumedCapacity", "ProjectionExpression",
           "ExpressionAttributeNames", "ExpressionAttributeValues", "IndexName", "KeyConditionExpression",
           "FilterExpression", "ScanIndexForward", "Limit", "Select", "AttributesToGet", "ExclusiveStartKey",
           "Item", "ConditionExpression", "ReturnValues", "Expected"]


def test_the_shortcut_takes_the_benchs_requests() -> None:
    for op, body in (("GetItem", GET), ("Query", QUERY), ("PutItem", PUT)):
        allowed, required = PLAIN_MEMBERS[op]
        assert plain_request(allowed, required, body)


@pytest.mark.parametrize("op,base", [("GetItem", GET), ("Query", QUERY), ("PutItem", PUT)])
@pytest.mark.parametrize("member", MEMBERS)
def test_each_member_one_step_off_answers_as_the_walk(pair, op: str, base: dict, member: str) -> None:
    fast, walk = pair
    for value in ODD:
        body = dict(base)
        body[member] = value
        assert _outcome(fast, op, body) == _outcome(walk, op, body), (member, value)
    body = {k: v for k, v in base.items() if k != member}
    assert _outcome(fast, op, body) == _outcome(walk, op, body), ("without", member)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(["GetItem", "Query", "PutItem"]),
       body=st.dictionaries(st.sampled_from(MEMBERS), st.sampled_from(ODD), max_size=6))
def test_random_bodies_answer_as_the_walk(pair, op: str, body: dict) -> None:
    fast, walk = pair
    assert _outcome(fast, op, body) == _outcome(walk, op, body)
