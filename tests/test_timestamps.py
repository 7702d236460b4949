"""The one reading of AWS timestamps the operations share (restore times, export/import windows, trail
lookups, DAX events)."""

import time

import pytest

from dynavault.timestamps import epoch_seconds


@pytest.mark.parametrize("value, seconds", [
    (1700000000, 1700000000.0),
    (1700000000.5, 1700000000.5),
    ("1700000000.25", 1700000000.25),
    ("2023-11-14T22:13:20Z", 1700000000.0),
    ("2023-11-14T22:13:20+00:00", 1700000000.0),
    ("2023-11-14T23:13:20+01:00", 1700000000.0),
    ("2023-11-14T22:13:20", 1700000000.0),  # no zone: UTC, whatever this machine's zone is
])
def test_both_forms(value, seconds, monkeypatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert epoch_seconds(value) == seconds
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("value", [True, None, "", "yesterday", "2023-13-45T00:00:00Z", [], {"a": 1}])
def test_anything_else_is_none(value) -> None:
    assert epoch_seconds(value) is None
