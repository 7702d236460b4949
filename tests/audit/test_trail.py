"""AuditTrail: per-(account, region) JSON lines, size rotation, LookupEvents filters and pagination."""

from __future__ import annotations

import json
import pathlib
import threading

import pytest

from dynavault.audit.trail import AuditTrail
from dynavault.caller import Caller
from dynavault.errors import AWSError

A, B = "111122223333", "444455556666"
REGION = "us-east-1"
T0 = 1_700_000_000


def iso(ts: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(
    i: int,
    account: str = A,
    region: str = REGION,
    name: str = "Decrypt",
    key: str = "k1",
    user: str = "alice",
) -> dict:
    return {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "arn": f"arn:aws:iam::{account}:user/{user}",
            "accountId": account,
            "accessKeyId": f"AKIA{user.upper()}",
            "userName": user,
        },
        "eventTime": iso(T0 + i),
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "awsRegion": region,
        "readOnly": name != "DisableKey",
        "eventID": f"ev-{account}-{i}",
        "resources": [
            {
                "accountId": account,
                "type": "AWS::KMS::Key",
                "ARN": f"arn:aws:kms:{region}:{account}:key/{key}",
            }
        ],
        "requestParameters": {"seq": i},
        "recipientAccountId": account,
    }


def caller(account: str = A, region: str = REGION) -> Caller:
    return Caller(account, region, f"arn:aws:iam::{account}:user/alice")


@pytest.fixture
def trail(tmp_path: pathlib.Path):
    t = AuditTrail(tmp_path / "audit", rotate_bytes=2000)
    yield t
    t.close()


def fill(trail: AuditTrail, n: int = 30) -> None:
    for i in range(n):
        trail.record(
            event(
                i,
                name="DisableKey" if i % 3 == 0 else "Decrypt",
                key=f"k{i % 2}",
                user="bob" if i % 5 == 0 else "alice",
            )
        )


def test_files_per_account_region_and_rotation(trail: AuditTrail, tmp_path: pathlib.Path) -> None:
    fill(trail)
    trail.record(event(0, account=B))
    trail.record(event(1, region="eu-west-1"))
    segments = sorted((tmp_path / "audit" / A / REGION).glob("events-*.jsonl"))
    assert len(segments) > 3  # 30 events of ~400 B over 2000-B segments
    assert all(p.stat().st_size <= 2000 for p in segments)
    events = trail.events(A, REGION)
    assert [e["requestParameters"]["seq"] for e in events] == list(range(30))
    assert [e["eventID"] for e in trail.events(B, REGION)] == [f"ev-{B}-0"]
    assert len(trail.events(A, "eu-west-1")) == 1
    for line in segments[0].read_text().splitlines():
        json.loads(line)
    # a new trail object on the same directory continues the newest segment
    trail.close()
    again = AuditTrail(tmp_path / "audit", rotate_bytes=2000)
    again.record(event(99))
    assert again.events(A, REGION)[-1]["requestParameters"]["seq"] == 99
    assert len(again.events(A, REGION)) == 31
    again.close()


def test_lookup_events_shape_and_isolation(trail: AuditTrail) -> None:
    fill(trail, 3)
    trail.record(event(0, account=B))
    out = trail.lookup_events(caller(), {})
    assert [e["EventId"] for e in out["Events"]] == [f"ev-{A}-2", f"ev-{A}-1", f"ev-{A}-0"]  # newest first
    first = out["Events"][0]
    assert first["EventName"] == "Decrypt" and first["ReadOnly"] == "true"
    assert first["EventTime"] == T0 + 2 and first["EventSource"] == "kms.amazonaws.com"
    assert first["Username"] == "alice" and first["AccessKeyId"] == "AKIAALICE"
    assert first["Resources"] == [
        {"ResourceType": "AWS::KMS::Key", "ResourceName": f"arn:aws:kms:{REGION}:{A}:key/k0"}
    ]
    assert json.loads(first["CloudTrailEvent"])["eventID"] == f"ev-{A}-2"
    assert "NextToken" not in out
    assert [e["EventId"] for e in trail.lookup_events(caller(B), {})["Events"]] == [f"ev-{B}-0"]
    assert trail.lookup_events(caller(region="eu-west-1"), {})["Events"] == []
    assert trail.lookup_events(caller("999999999999"), {})["Events"] == []


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("EventName", "DisableKey", [i for i in range(30) if i % 3 == 0]),
        ("ResourceName", f"arn:aws:kms:{REGION}:{A}:key/k1", [i for i in range(30) if i % 2 == 1]),
        ("EventSource", "kms.amazonaws.com", list(range(30))),
        ("EventSource", "dynamodb.amazonaws.com", []),
        ("Username", "bob", [i for i in range(30) if i % 5 == 0]),
        ("ReadOnly", "false", [i for i in range(30) if i % 3 == 0]),
        ("EventId", f"ev-{A}-7", [7]),
        ("AccessKeyId", "AKIABOB", [i for i in range(30) if i % 5 == 0]),
        ("ResourceType", "AWS::KMS::Key", list(range(30))),
    ],
)
def test_lookup_attribute_filters(trail: AuditTrail, key: str, value: str, expected: list[int]) -> None:
    fill(trail)
    out = trail.lookup_events(
        caller(), {"LookupAttributes": [{"AttributeKey": key, "AttributeValue": value}]}
    )
    seqs = [json.loads(e["CloudTrailEvent"])["requestParameters"]["seq"] for e in out["Events"]]
    assert seqs == sorted(expected, reverse=True)


def test_time_range_and_pagination(trail: AuditTrail) -> None:
    fill(trail)
    out = trail.lookup_events(caller(), {"StartTime": T0 + 10, "EndTime": T0 + 19.5})
    assert [e["EventTime"] for e in out["Events"]] == [T0 + i for i in range(19, 9, -1)]
    params: dict = {
        "MaxResults": 4,
        "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "Decrypt"}],
    }
    seen: list[str] = []
    pages = 0
    while True:
        page = trail.lookup_events(caller(), params)
        pages += 1
        assert len(page["Events"]) <= 4
        seen += [e["EventId"] for e in page["Events"]]
        # events appended while paging must not shift later pages
        trail.record(event(100 + pages, name="Decrypt"))
        if "NextToken" not in page:
            break
        params["NextToken"] = page["NextToken"]
    expected = [f"ev-{A}-{i}" for i in range(29, -1, -1) if i % 3 != 0]
    assert seen == expected and pages in (5, 6)  # a last, empty page is allowed (CloudTrail does it)


def test_lookup_errors(trail: AuditTrail) -> None:
    fill(trail, 5)
    cases = [
        ({"MaxResults": 0}, "InvalidMaxResultsException"),
        ({"MaxResults": 51}, "InvalidMaxResultsException"),
        ({"StartTime": T0 + 5, "EndTime": T0}, "InvalidTimeRangeException"),
        ({"NextToken": "bogus"}, "InvalidNextTokenException"),
        (
            {"LookupAttributes": [{"AttributeKey": "Nope", "AttributeValue": "x"}]},
            "InvalidLookupAttributesException",
        ),
        (
            {
                "LookupAttributes": [
                    {"AttributeKey": "EventName", "AttributeValue": "x"},
                    {"AttributeKey": "Username", "AttributeValue": "y"},
                ]
            },
            "InvalidLookupAttributesException",
        ),
    ]
    for params, code in cases:
        with pytest.raises(AWSError) as info:
            trail.lookup_events(caller(), params)
        assert info.value.code == code, params
    # a token from one filter cannot be replayed with another
    token = trail.lookup_events(caller(), {"MaxResults": 1})["NextToken"]
    with pytest.raises(AWSError) as info:
        trail.lookup_events(
            caller(),
            {
                "MaxResults": 1,
                "NextToken": token,
                "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "Decrypt"}],
            },
        )
    assert info.value.code == "InvalidNextTokenException"


def test_concurrent_records_are_whole_lines(trail: AuditTrail) -> None:
    def writer(offset: int) -> None:
        for i in range(200):
            trail.record(event(offset + i))

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = trail.events(A, REGION)
    assert len(events) == 800
    assert sorted(e["requestParameters"]["seq"] for e in events) == sorted(
        k * 1000 + i for k in range(4) for i in range(200)
    )
    assert trail.operations()["LookupEvents"](caller(), {"MaxResults": 50})["Events"]
