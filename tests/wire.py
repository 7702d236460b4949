"""Raw-protocol helpers for tests: sign with botocore's SigV4 and send with http.client."""

from __future__ import annotations

import datetime
import http.client
import json
from unittest import mock
from urllib.parse import urlparse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> dict:
        return json.loads(self.body)


def send(endpoint: str, body: bytes, headers: dict[str, str], method: str = "POST", path: str = "/") -> Response:
    url = urlparse(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def signed_request(
    endpoint: str,
    target: str,
    body: bytes | dict,
    *,
    service: str = "dynamodb",
    access_key: str = "testing",
    secret: str = "testing",
    region: str = "us-east-1",
    content_type: str = "application/x-amz-json-1.0",
    extra_headers: dict[str, str] | None = None,
    when: datetime.datetime | None = None,
) -> Response:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    headers = {"Content-Type": content_type, "X-Amz-Target": target, **(extra_headers or {})}
    request = AWSRequest("POST", endpoint + "/", data=body, headers=headers)
    auth = SigV4Auth(Credentials(access_key, secret), service, region)
    if when is None:
        auth.add_auth(request)
    else:  # sign as if the client's clock said `when` (clock-skew tests)
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            auth.add_auth(request)
    return send(endpoint, body, dict(request.headers))
