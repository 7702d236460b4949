"""IAM wildcard matching (``*``, ``?``) in key policies and conditions, without a regex or a cache.

The matcher is checked against the regular-expression translation it replaced, and bounded in time for a
pattern that makes a backtracking regex crawl."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from dynavault.kms.conditions import like


def _regex(pattern: str, value: str) -> bool:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(body, value, re.DOTALL) is not None


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab*?:/", max_size=12), st.text(alphabet="ab:/", max_size=14))
def test_like_agrees_with_the_regex_translation(pattern: str, value: str) -> None:
    assert like(pattern, value) == _regex(pattern, value)


def test_like_is_case_sensitive_and_literal_otherwise() -> None:
    assert like("arn:aws:kms:*:111122223333:key/*", "arn:aws:kms:us-east-1:111122223333:key/abc")
    assert not like("arn:aws:kms:*:111122223333:key/*", "arn:aws:kms:us-east-1:111122223333:alias/abc")
    assert not like("Key", "key")
    assert like("a.b", "a.b") and not like("a.b", "axb")  # "." is literal
    assert like("", "") and not like("", "a") and like("*", "")


def test_a_pathological_pattern_is_matched_in_bounded_time() -> None:
    pattern = "*a" * 200 + "b"
    value = "a" * 2000
    start = time.perf_counter()
    assert not like(pattern, value)
    assert time.perf_counter() - start < 2.0
