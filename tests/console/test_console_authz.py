"""Console authorization against a real server with an HTTP client: sessions, CSRF, accounts, the
--allow-any-credentials guard, and that console actions are the principal's own (authorized and audited)."""

from __future__ import annotations

import time

import orjson
import pytest
import requests

from tests.conftest import make_table

from .helpers import csrf_of, sign_in, start_with_accounts

ACCOUNT_A, ACCOUNT_B = "111111111111", "222222222222"


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    srv, keys = start_with_accounts(tmp_path_factory.mktemp("console-authz"), [ACCOUNT_A, ACCOUNT_B])
    yield srv, keys
    srv.kill()


def _client(srv, key, service):
    return srv.client(service, access_key=key.access_key_id, secret=key.secret)


@pytest.mark.parametrize("path", ["/console/", "/console/tables", "/console/tables/x", "/console/keys",
                                  "/console/audit", "/console/tables/x/item"])
def test_no_session_redirects_to_sign_in(console, path):
    srv, _ = console
    answer = requests.get(srv.endpoint + path, allow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/login")
    assert "dv_console=" not in answer.headers.get("set-cookie", "")


def test_posts_without_session_are_refused(console):
    srv, (a, _) = console
    kms = _client(srv, a, "kms")
    before = len(kms.list_keys()["Keys"])
    answer = requests.post(srv.endpoint + "/console/keys/new", data={"csrf": "x", "alias": "nosession"},
                           allow_redirects=False)
    assert answer.status_code == 403
    # a stolen-looking but unknown cookie is no session either
    answer = requests.post(srv.endpoint + "/console/keys/new", data={"csrf": "x"},
                           cookies={"dv_console": "made-up"}, allow_redirects=False)
    assert answer.status_code == 403
    assert len(kms.list_keys()["Keys"]) == before


def test_wrong_secret_is_refused(console):
    srv, (a, _) = console
    http = requests.Session()
    page = http.get(srv.endpoint + "/console/login")
    answer = http.post(srv.endpoint + "/console/login", allow_redirects=False,
                       data={"csrf": csrf_of(page.text), "access_key_id": a.access_key_id,
                             "secret_access_key": a.secret + "x"})
    assert answer.status_code == 401
    assert "dv_console=" not in answer.headers.get("set-cookie", "")
    assert http.get(srv.endpoint + "/console/tables", allow_redirects=False).status_code == 303


def test_session_cookie_is_httponly_strict_and_short_lived(console):
    srv, (a, _) = console
    http = requests.Session()
    page = http.get(srv.endpoint + "/console/login")
    answer = http.post(srv.endpoint + "/console/login", allow_redirects=False,
                       data={"csrf": csrf_of(page.text), "access_key_id": a.access_key_id,
                             "secret_access_key": a.secret})
    cookie = next(c for c in answer.raw.headers.getlist("Set-Cookie") if c.startswith("dv_console="))
    parts = [p.strip() for p in cookie.split(";")]
    assert "HttpOnly" in parts and "SameSite=Strict" in parts and "Path=/console" in parts
    max_age = int(next(p for p in parts if p.startswith("Max-Age="))[8:])
    assert 0 < max_age <= 900
    page = http.get(srv.endpoint + "/console/tables")
    assert "content-security-policy" in page.headers and page.headers["x-frame-options"] == "DENY"


def test_sign_in_form_needs_its_csrf_token(console):
    srv, (a, _) = console
    http = requests.Session()
    http.get(srv.endpoint + "/console/login")  # sets the sign-in cookie, but the form below does not echo it
    for token in (None, "wrong"):
        data = {"access_key_id": a.access_key_id, "secret_access_key": a.secret}
        if token:
            data["csrf"] = token
        answer = http.post(srv.endpoint + "/console/login", data=data, allow_redirects=False)
        assert answer.status_code == 403
        assert "dv_console=" not in answer.headers.get("set-cookie", "").replace("dv_console_login=", "")


def test_forms_without_the_session_csrf_token_are_refused(console):
    srv, (a, _) = console
    http, csrf = sign_in(srv.endpoint, a)
    kms, ddb = _client(srv, a, "kms"), _client(srv, a, "dynamodb")
    before = len(kms.list_keys()["Keys"])
    for data in ({"alias": "alias/csrf-missing"}, {"alias": "alias/csrf-wrong", "csrf": csrf[:-2] + "xx"}):
        answer = http.post(srv.endpoint + "/console/keys/new", data=data, allow_redirects=False)
        assert answer.status_code == 403
    answer = http.post(srv.endpoint + "/console/tables/new", allow_redirects=False,
                       data={"name": "csrf-table", "pk": "pk", "pk_type": "S", "encryption": "owned"})
    assert answer.status_code == 403
    assert len(kms.list_keys()["Keys"]) == before
    assert "csrf-table" not in ddb.list_tables()["TableNames"]
    # the same form with the token works: the refusal above was the token's
    answer = http.post(srv.endpoint + "/console/keys/new", data={"alias": "alias/csrf-ok", "csrf": csrf})
    assert answer.status_code == 200
    assert len(kms.list_keys()["Keys"]) == before + 1


def test_another_accounts_table_is_refused(console, unique_name):
    srv, (a, b) = console
    ddb_b = _client(srv, b, "dynamodb")
    make_table(ddb_b, unique_name)
    ddb_b.put_item(TableName=unique_name, Item={"pk": {"S": "b-secret-row"}, "v": {"S": "only-b-sees-this"}})
    arn = ddb_b.describe_table(TableName=unique_name)["Table"]["TableArn"]
    http, csrf = sign_in(srv.endpoint, a)
    assert unique_name not in http.get(srv.endpoint + "/console/tables").text
    for path in (f"/console/tables/{unique_name}", f"/console/tables/{arn}",
                 f"/console/tables/{unique_name}/item?key=eyJwayI6eyJTIjoiYi1zZWNyZXQtcm93In19"):
        answer = http.get(srv.endpoint + path, allow_redirects=False)
        assert answer.status_code in (403, 404), (path, answer.status_code)
        assert "only-b-sees-this" not in answer.text
    answer = http.post(srv.endpoint + f"/console/tables/{unique_name}/item", allow_redirects=False,
                       data={"csrf": csrf, "item": '{"pk": {"S": "planted"}}'})
    assert answer.status_code in (403, 404)
    answer = http.post(srv.endpoint + f"/console/tables/{unique_name}/delete", allow_redirects=False,
                       data={"csrf": csrf, "confirm": unique_name})
    assert ddb_b.describe_table(TableName=unique_name)["Table"]["TableStatus"] == "ACTIVE"
    assert ddb_b.scan(TableName=unique_name)["Count"] == 1


def test_console_actions_are_the_principals_and_audited_with_the_console_agent(console):
    srv, (a, _) = console
    http, csrf = sign_in(srv.endpoint, a)
    answer = http.post(srv.endpoint + "/console/keys/new", data={"csrf": csrf, "description": "made in console"})
    key_id = answer.url.rsplit("/", 1)[1]
    trail = _client(srv, a, "cloudtrail")
    events = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateKey"}])
    mine = [orjson.loads(e["CloudTrailEvent"]) for e in events["Events"]
            if any(r.get("ResourceName", "").endswith(key_id) for r in e.get("Resources", []))]
    assert len(mine) == 1
    assert mine[0]["userAgent"].startswith("dynavault-console/")
    assert mine[0]["userIdentity"]["arn"] == f"arn:aws:iam::{ACCOUNT_A}:root"
    assert mine[0]["userIdentity"]["accessKeyId"] == a.access_key_id


def test_sign_out_ends_the_session(console):
    srv, (a, _) = console
    http, csrf = sign_in(srv.endpoint, a)
    cookie = http.cookies.get("dv_console", path="/console")
    http.post(srv.endpoint + "/console/logout", data={"csrf": csrf})
    answer = requests.get(srv.endpoint + "/console/tables", cookies={"dv_console": cookie}, allow_redirects=False)
    assert answer.status_code == 303


def test_idle_sessions_expire(tmp_path):
    srv, (a,) = start_with_accounts(tmp_path, [ACCOUNT_A], console_session_seconds=1)
    try:
        http, _ = sign_in(srv.endpoint, a)
        time.sleep(1.5)
        assert http.get(srv.endpoint + "/console/tables", allow_redirects=False).status_code == 303
    finally:
        srv.kill()


def test_any_credentials_server_refuses_the_console_unless_allowed(start_server):
    srv = start_server(allow_any_credentials=True)
    for method, path in (("get", "/console/login"), ("get", "/console/tables"), ("post", "/console/login"),
                         ("get", "/console/static/console.css"), ("post", "/console/keys/new")):
        answer = getattr(requests, method)(srv.endpoint + path, allow_redirects=False,
                                           data={"access_key_id": "111111111111", "secret_access_key": "x"})
        assert answer.status_code == 403, (method, path)
        assert "console-allow-any" in answer.text
    allowed = start_server(allow_any_credentials=True, console_allow_any=True)
    http = requests.Session()
    page = http.get(allowed.endpoint + "/console/login")
    assert page.status_code == 200
    answer = http.post(allowed.endpoint + "/console/login", allow_redirects=False,
                       data={"csrf": csrf_of(page.text), "access_key_id": "333333333333", "secret_access_key": "x"})
    assert answer.status_code == 303
    assert "arn:aws:iam::333333333333:" in http.get(allowed.endpoint + "/console/tables").text
