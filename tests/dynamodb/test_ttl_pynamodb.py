"""PynamoDB (a test extra): a model with a ``TTLAttribute`` creates its table (CreateTable, then
UpdateTimeToLive) and writes and reads items; an expired one is swept."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

pynamodb = pytest.importorskip("pynamodb")

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute  # noqa: E402
from pynamodb.models import Model  # noqa: E402


def _model(endpoint: str, name: str) -> type[Model]:
    class Session(Model):
        class Meta:
            table_name = name
            host = endpoint
            region = "us-east-1"
            aws_access_key_id = "testing"
            aws_secret_access_key = "testing"
            billing_mode = "PAY_PER_REQUEST"

        sid = UnicodeAttribute(hash_key=True)
        visits = NumberAttribute(default=0)
        expires = TTLAttribute(null=True)

    return Session


def test_a_model_with_a_ttl_attribute_creates_its_table_and_round_trips(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, ttl_sweep_seconds=0.3)
    Session = _model(srv.endpoint, unique_name)
    Session.create_table(wait=True)
    ddb = srv.client("dynamodb")
    assert ddb.describe_time_to_live(TableName=unique_name)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "expires"}

    Session("live", visits=3, expires=timedelta(hours=1)).save()
    got = Session.get("live")
    assert got.visits == 3
    assert abs((got.expires - datetime.now(UTC)).total_seconds() - 3600) < 60
    # the wire form is a Number of epoch seconds, which is what the sweeper acts on
    raw = ddb.get_item(TableName=unique_name, Key={"sid": {"S": "live"}})["Item"]
    assert set(raw["expires"]) == {"N"}

    Session("gone", expires=datetime.now(UTC) - timedelta(minutes=5)).save()
    deadline = time.time() + 10
    while time.time() < deadline and Session.count() > 1:
        time.sleep(0.2)
    assert [s.sid for s in Session.scan()] == ["live"]
