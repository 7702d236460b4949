"""Building CloudTrail-shaped events (storing them is trail.py's job).

Any service that audits its calls builds its events here, so every event in the trail has one shape: the
key service today, DynamoDB's own management events later. Nothing here knows about a particular service.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Iterable

from dynavault.caller import Caller
from dynavault.errors import AWSError

EVENT_VERSION = "1.08"


def iso_time(ts: float) -> str:
    """CloudTrail's eventTime form (seconds, UTC, ``Z``)."""
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lower_first(name: str) -> str:
    """A wire member name as CloudTrail and AWS validation messages spell it (``KeyId`` -> ``keyId``)."""
    return name[:1].lower() + name[1:]


def camel(value: object) -> object:
    """Request/response members in CloudTrail's camelCase, recursively."""
    if isinstance(value, dict):
        return {lower_first(k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def service_root(principal: str) -> str:
    """dynamodb.us-east-1.amazonaws.com -> dynamodb.amazonaws.com (CloudTrail's invokedBy form)."""
    parts = principal.split(".")
    if len(parts) == 4 and parts[-2:] == ["amazonaws", "com"]:
        return f"{parts[0]}.amazonaws.com"
    return principal


def identity(caller: Caller) -> dict:
    """The event's userIdentity for a caller (a principal, or a service acting for itself)."""
    if caller.is_service:
        return {
            "type": "AWSService",
            "invokedBy": service_root(caller.via_service or caller.principal_arn),
        }
    ident: dict = {
        "type": caller.user_type(),
        "principalId": caller.access_key or caller.account,
        "arn": caller.principal_arn,
        "accountId": caller.account,
    }
    if caller.access_key:
        ident["accessKeyId"] = caller.access_key
    if ident["type"] == "IAMUser" and "/" in caller.principal_arn:
        ident["userName"] = caller.principal_arn.rsplit("/", 1)[-1]
    if caller.via_service:
        ident["invokedBy"] = service_root(caller.via_service)
    return ident


def request_parameters(params: object, secret: Iterable[str]) -> dict | None:
    """The request as CloudTrail shows it, without the members named in ``secret``."""
    if not isinstance(params, dict):
        return None
    hidden = set(secret)
    return {lower_first(k): camel(v) for k, v in params.items() if k not in hidden} or None


def resource(account: str, resource_type: str, arn: str) -> dict:
    return {"accountId": account, "type": resource_type, "ARN": arn}


def api_call(
    *,
    source: str,
    name: str,
    caller: Caller,
    now: float,
    request: dict | None,
    response: dict | None,
    read_only: bool,
    resources: list[dict],
    error: AWSError | None,
) -> dict:
    """An AwsApiCall management event (without recipientAccountId: see ``fan_out``)."""
    via = caller.via_service or (caller.principal_arn if caller.is_service else None)
    event: dict = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": identity(caller),
        "eventTime": iso_time(now),
        "eventSource": source,
        "eventName": name,
        "awsRegion": caller.region,
        "sourceIPAddress": service_root(via) if via else caller.source_ip,
        "userAgent": service_root(via) if via else caller.user_agent,
        "requestParameters": request or None,
        "responseElements": None if error else response,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": read_only,
        "resources": resources,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "eventCategory": "Management",
    }
    if error is not None:
        event["errorCode"] = error.code
        event["errorMessage"] = error.message or ""
    return event


def service_event(
    *, source: str, name: str, account: str, region: str, now: float, resources: list[dict]
) -> dict:
    """An AwsServiceEvent: something the service did by itself (a scheduled deletion, a rotation)."""
    return {
        "eventVersion": EVENT_VERSION,
        "userIdentity": {"accountId": account, "invokedBy": "AWS Internal"},
        "eventTime": iso_time(now),
        "eventSource": source,
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": "AWS Internal",
        "userAgent": "AWS Internal",
        "requestParameters": None,
        "responseElements": None,
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "resources": resources,
        "eventType": "AwsServiceEvent",
        "managementEvent": True,
        "eventCategory": "Management",
        "recipientAccountId": account,
    }


def fan_out(event: dict, recipients: list[str]) -> list[dict]:
    """One copy per recipient account; copies share a sharedEventID and each gets its own eventID."""
    if len(recipients) > 1:
        event["sharedEventID"] = str(uuid.uuid4())
    out = []
    for i, account in enumerate(recipients):
        ev = event if i == 0 else {**event, "eventID": str(uuid.uuid4())}
        ev["recipientAccountId"] = account
        out.append(ev)
    return out
