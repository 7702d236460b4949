"""Console pages over HTTP against a real server: what each form does, checked through boto3 as the same
principal, and that errors are DynamoDB's and KMS's own, shown on the page."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import make_table

from .helpers import sign_in, start_with_accounts

ACCOUNT = "666666666666"


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    srv, (key,) = start_with_accounts(tmp_path_factory.mktemp("console-pages"), [ACCOUNT], sse_update_seconds=0.5,
                                      key_check_seconds=0.5)
    http, csrf = sign_in(srv.endpoint, key)
    ddb = srv.client("dynamodb", access_key=key.access_key_id, secret=key.secret)
    kms = srv.client("kms", access_key=key.access_key_id, secret=key.secret)
    yield srv, http, csrf, ddb, kms, key
    srv.kill()


def _text(response) -> str:
    return html.unescape(response.text)


def test_deletion_protection_is_respected(console, unique_name):
    srv, http, csrf, ddb, _, _ = console
    answer = http.post(srv.endpoint + "/console/tables/new",
                       data={"csrf": csrf, "name": unique_name, "pk": "id", "pk_type": "S", "encryption": "owned",
                             "deletion_protection": "1"})
    assert answer.status_code == 200 and answer.url.endswith("/console/tables/" + unique_name)
    assert ddb.describe_table(TableName=unique_name)["Table"]["DeletionProtectionEnabled"] is True
    answer = http.post(srv.endpoint + f"/console/tables/{unique_name}/delete",
                       data={"csrf": csrf, "confirm": unique_name})
    assert "ValidationException" in answer.text and "deletion protection" in _text(answer).lower()
    assert ddb.describe_table(TableName=unique_name)["Table"]["TableStatus"] == "ACTIVE"
    http.post(srv.endpoint + f"/console/tables/{unique_name}/protection", data={"csrf": csrf, "enabled": "false"})
    answer = http.post(srv.endpoint + f"/console/tables/{unique_name}/delete",
                       data={"csrf": csrf, "confirm": unique_name})
    assert answer.url.endswith("/console/tables")
    assert unique_name not in ddb.list_tables()["TableNames"] or \
        ddb.describe_table(TableName=unique_name)["Table"]["TableStatus"] == "DELETING"


def test_key_switch_errors_are_update_tables_own(console, unique_name):
    srv, http, csrf, ddb, kms, _ = console
    make_table(ddb, unique_name)
    # already under the AWS owned key: DynamoDB's own refusal, shown on the page
    answer = http.post(srv.endpoint + f"/console/tables/{unique_name}/sse", data={"csrf": csrf, "encryption": "owned"})
    assert "Table is already encrypted by default" in _text(answer)
    # a disabled target key: refused synchronously, the table stays where it was
    key = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=key["KeyId"])
    answer = http.post(srv.endpoint + f"/console/tables/{unique_name}/sse",
                       data={"csrf": csrf, "encryption": "customer", "key_arn": key["Arn"]})
    assert "is disabled" in _text(answer)
    assert "SSEDescription" not in ddb.describe_table(TableName=unique_name)["Table"]
    # to the AWS managed key: accepted, the table reports it
    answer = http.post(srv.endpoint + f"/console/tables/{unique_name}/sse", data={"csrf": csrf, "encryption": "managed"})
    assert "switch requested" in answer.text
    assert ddb.describe_table(TableName=unique_name)["Table"]["SSEDescription"]["Status"] in ("UPDATING", "ENABLED")


def test_items_page_scan_query_and_escaping(console, unique_name):
    srv, http, csrf, ddb, _, _ = console
    make_table(ddb, unique_name, range_type="N")
    for i in range(120):
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"p{i % 3}"}, "sk": {"N": str(i)},
                                                  "note": {"S": "<script>alert(1)</script>" if i == 7 else "plain"}})
    pages, start = [], None
    while True:
        answer = http.get(srv.endpoint + f"/console/tables/{unique_name}", params={"start": start} if start else {})
        assert answer.status_code == 200
        assert "<script>" not in answer.text  # item data is escaped, never markup
        pages.append(answer.text.count(">open</a>"))
        match = re.search(r'href="[^"]*[?&]amp;start=([^"&]+)"|href="[^"]*\?start=([^"&]+)"', answer.text)
        if not match:
            break
        start = match[1] or match[2]
    assert pages == [50, 50, 20]
    answer = http.post(srv.endpoint + f"/console/tables/{unique_name}/query",
                       data={"csrf": csrf, "pk": "p1", "sk_op": ">=", "sk": "100"})
    assert answer.text.count(">open</a>") == len([i for i in range(100, 120) if i % 3 == 1])
    # the key values are sealed into the URL, not spelled out (a sealed token may hold "p1" by chance)
    query = parse_qs(urlsplit(answer.url).query)
    assert query and not {"pk", "sk"} & set(query) and all("p1" != v and "100" != v for vs in query.values()
                                                            for v in vs), answer.url


def test_item_add_edit_delete_and_errors(console, unique_name):
    srv, http, csrf, ddb, _, _ = console
    make_table(ddb, unique_name)
    url = srv.endpoint + f"/console/tables/{unique_name}/item"
    answer = http.post(url, data={"csrf": csrf, "item": '{"pk": {"S": "a"}, "n": {"N": "1"}}'})
    assert answer.status_code == 200 and "Item saved" in answer.text
    key = re.search(r"key=([A-Za-z0-9_-]+)", answer.url)[1]
    answer = http.post(url, data={"csrf": csrf, "item": '{"pk": {"S": "a"}, "n": {"N": "2"}}', "key": key})
    assert ddb.get_item(TableName=unique_name, Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "2"}
    answer = http.post(url, data={"csrf": csrf, "item": "{not json"})
    assert answer.status_code == 400 and "Not DynamoDB JSON" in answer.text
    answer = http.post(url, data={"csrf": csrf, "item": '{"other": {"S": "x"}}'})
    assert answer.status_code == 400 and "ValidationException" in answer.text  # PutItem's own message
    # an item link works in its own session only: its key is sealed under that session's key
    other, _ = sign_in(srv.endpoint, console[5])
    answer = other.get(url, params={"key": key})
    assert "not from this session" in answer.text and answer.url.endswith(f"/console/tables/{unique_name}")
    http.post(url + "/delete", data={"csrf": csrf, "key": key})
    assert "Item" not in ddb.get_item(TableName=unique_name, Key={"pk": {"S": "a"}})


def test_key_lifecycle_actions(console):
    srv, http, csrf, _, kms, _ = console
    answer = http.post(srv.endpoint + "/console/keys/new", data={"csrf": csrf, "alias": "pages-lifecycle"})
    key_id = answer.url.rsplit("/", 1)[1]
    assert kms.list_aliases(KeyId=key_id)["Aliases"][0]["AliasName"] == "alias/pages-lifecycle"
    base = srv.endpoint + f"/console/keys/{key_id}/"
    http.post(base + "rotation-on", data={"csrf": csrf})
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    http.post(base + "schedule-deletion", data={"csrf": csrf, "days": "7"})
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    answer = http.post(base + "enable", data={"csrf": csrf})
    assert "KMSInvalidStateException" in answer.text  # KMS's refusal, shown
    http.post(base + "cancel-deletion", data={"csrf": csrf})
    http.post(base + "enable", data={"csrf": csrf})
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    page = http.get(srv.endpoint + f"/console/keys/{key_id}").text
    assert "kms:*" in html.unescape(page) or "Statement" in html.unescape(page)  # the key policy is shown


def test_region_switch_shows_that_regions_tables(console, unique_name):
    srv, http, csrf, _, _, key = console
    west = srv.client("dynamodb", access_key=key.access_key_id, secret=key.secret, region="us-west-2")
    make_table(west, unique_name)
    assert unique_name not in http.get(srv.endpoint + "/console/tables").text
    http.post(srv.endpoint + "/console/region", data={"csrf": csrf, "region": "us-west-2"})
    try:
        assert unique_name in http.get(srv.endpoint + "/console/tables").text
    finally:
        http.post(srv.endpoint + "/console/region", data={"csrf": csrf, "region": "us-east-1"})
