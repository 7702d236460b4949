"""The local bucket store: S3's bucket-name rules, and no object key or link leads out of its bucket."""

from __future__ import annotations

import os

import pytest

from dynavault.dynamodb.exports.buckets import BucketError, BucketStore, check_prefix, valid_bucket_name


@pytest.mark.parametrize("name", ["abc", "my.bucket-1", "a" * 63])
def test_valid_bucket_names(name):
    assert valid_bucket_name(name)


@pytest.mark.parametrize("name", ["ab", "a" * 64, "Upper", "-start", "end-", "a..b", "192.168.0.1", "a/b", "..",
                                  ".", "a_b", "", None, 5])
def test_invalid_bucket_names(name):
    assert not valid_bucket_name(name)


@pytest.fixture
def store(tmp_path):
    (tmp_path / "root" / "bucket").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return BucketStore(tmp_path / "root"), tmp_path


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/./b", "a\\b", "a\x00b", "",
                                 "x" * 1025])
def test_keys_that_leave_the_bucket_are_refused(store, key):
    buckets, _ = store
    with pytest.raises(BucketError):
        buckets.put("bucket", key, b"x")
    with pytest.raises(BucketError):
        buckets.get("bucket", key)


def test_a_link_out_of_the_bucket_is_refused(store):
    buckets, tmp = store
    os.symlink(tmp / "outside", tmp / "root" / "bucket" / "link")
    with pytest.raises(BucketError):
        buckets.put("bucket", "link/file", b"x")
    assert not (tmp / "outside" / "file").exists()
    (tmp / "outside" / "secret").write_bytes(b"s")
    with pytest.raises(BucketError):
        buckets.get("bucket", "link/secret")
    assert list(buckets.list("bucket")) == []
    os.symlink(tmp / "outside", tmp / "root" / "linked-bucket")
    with pytest.raises(BucketError):
        buckets.bucket_path("linked-bucket")


def test_missing_bucket_and_round_trip(store):
    buckets, tmp = store
    with pytest.raises(BucketError):
        buckets.put("nobucket", "a", b"x")
    buckets.put("bucket", "a/b/c.json", b"data")
    assert buckets.get("bucket", "a/b/c.json") == b"data"
    assert list(buckets.list("bucket", "a/")) == ["a/b/c.json"]
    assert oct((tmp / "root" / "bucket" / "a" / "b" / "c.json").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("prefix", ["../x", "a/../b", "/", "a//b"])
def test_bad_prefixes(prefix):
    with pytest.raises(BucketError):
        check_prefix(prefix)


def test_good_prefixes():
    assert check_prefix(None) == "" and check_prefix("a/b/") == "a/b/" and check_prefix("x") == "x"
