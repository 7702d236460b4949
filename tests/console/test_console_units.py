"""The console's pure parts: session lifetimes and CSRF tokens, URL key tokens, the KMS timeline's counts."""

from __future__ import annotations

import base64

from dynavault.console import format as fmt
from dynavault.console.chart import timeline
from dynavault.console.sessions import SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_end_when_idle_and_at_their_maximum_age():
    clock = Clock()
    store = SessionStore(idle_seconds=10, max_seconds=25, clock=clock)
    token, session = store.create("111111111111", "arn:aws:iam::111111111111:root", "AKIA", "us-east-1")
    assert store.get(token) is session
    clock.now += 9
    assert store.get(token) is session  # used: the idle clock restarts
    clock.now += 9
    assert store.get(token) is session
    clock.now += 9  # 27 s old, though never idle for 10 s
    assert store.get(token) is None
    token, _ = store.create("111111111111", "arn:aws:iam::111111111111:root", "AKIA", "us-east-1")
    clock.now += 11
    assert store.get(token) is None
    assert store.get(None) is None and store.get("x" * 500) is None


def test_session_tokens_are_not_kept_and_csrf_is_per_session():
    store = SessionStore()
    token, session = store.create("111111111111", "arn:aws:iam::111111111111:root", "AKIA", "us-east-1")
    other_token, other = store.create("111111111111", "arn:aws:iam::111111111111:root", "AKIA", "us-east-1")
    assert token not in repr(store.__dict__) and session.csrf not in repr(session)
    assert session.check_csrf(session.csrf) and not session.check_csrf(other.csrf)
    assert not session.check_csrf(None) and not session.check_csrf("")
    store.end(token)
    assert store.get(token) is None and store.get(other_token) is other


def test_session_count_is_capped():
    store = SessionStore(max_sessions=3)
    tokens = [store.create("1", "p", "k", "us-east-1")[0] for _ in range(5)]
    assert len(store) == 3
    assert store.get(tokens[0]) is None and store.get(tokens[-1]) is not None


def test_key_tokens_are_sealed_per_session_and_refuse_garbage():
    mine, theirs = b"k" * 16, b"t" * 16
    key = {"pk": {"S": "plaintext-canary"}, "sk": {"N": "-1.5e3"}}
    token = fmt.key_token(key, mine)
    assert fmt.parse_key_token(token, mine) == key
    assert "plaintext-canary" not in base64.urlsafe_b64decode(token + "==").decode("latin-1")
    assert fmt.parse_key_token(token, theirs) is None  # another session's token opens nothing
    for bad in ("", "!!!", fmt.key_token([1, 2], mine), "A" * (fmt.MAX_KEY_TOKEN + 1), "bm90IGpzb24",
                token[:-2] + ("AA" if token[-2:] != "AA" else "BB")):
        assert fmt.parse_key_token(bad, mine) is None


def test_timeline_counts_each_series_per_bucket():
    events = [(100.0, "GenerateDataKey", False), (101.0, "Decrypt", False), (101.0, "Decrypt", False),
              (130.0, "Decrypt", True), (130.0, "Encrypt", False)]
    chart = timeline("orders", events, start=100.0, end=130.0)
    totals = {line.name: line.total for line in chart.lines}
    assert totals == {"GenerateDataKey": 1, "Decrypt": 2, "errors": 1}  # a failed Decrypt counts as an error
    decrypt = next(line for line in chart.lines if line.name == "Decrypt")
    assert [v for _, _, v in decrypt.dots] == [2]
    assert len(decrypt.points.split()) == 30  # one point per bucket, empty buckets at zero
