"""Key policy evaluation: the IAM policy language as KMS key policies use it.

Explicit Deny wins, then any Allow. Principals: ``*``, account ids and ``arn:aws:iam::<acct>:root`` (any
principal of that account: we have no IAM, so delegation to IAM is assumed to allow), principal ARNs and
``Service`` principals. Conditions: every IAM operator (kms/conditions.py) over the request context built by
``request_context``. ``parse`` refuses what KMS refuses (size, element names and types, unknown operators);
``load`` reads a stored policy without refusing it, and a condition it cannot evaluate then fails closed.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

import orjson

from dynavault.audit.events import service_root
from dynavault.errors import AWSError

from . import conditions

ALLOW = "Allow"
DENY = "Deny"
#: KMS's key policy size quota (bytes); the model's own limit (131072) is checked by the front end
MAX_POLICY_BYTES = 32768

#: tags per KMS key (the AWS-wide tagging quota)
MAX_TAGS = 50

_TOP_LEVEL = {"Version", "Id", "Statement"}
_STATEMENT = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource",
              "Condition"}
_PRINCIPAL_TYPES = {"AWS", "Service", "Federated", "CanonicalUser"}
_VERSIONS = {"2012-10-17", "2008-10-17"}
_AWS_PRINCIPAL = re.compile(r"^(\*|\d{12}|arn:aws[a-z-]*:(iam|sts)::\d{12}:.+)$")
#: condition keys KMS refuses in a key policy (they name the key's own tags and aliases)
_FORBIDDEN_KEYS = re.compile(r"^(aws:resourcetag(/.*)?|kms:resourcetag(/.*)?|kms:resourcealiases)$")
#: keys whose value changes from one request to the next: verdicts using them are not cached
_PER_REQUEST_KEYS = {"aws:currenttime", "aws:epochtime"}
_CRYPTO_ACTIONS = {"kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                   "kms:GenerateDataKeyWithoutPlaintext"}


@dataclass(frozen=True, slots=True)
class Request:
    """What a policy statement is evaluated against."""

    principal_arn: str
    account: str
    is_service: bool
    action: str  # "kms:Decrypt"
    #: condition key (lower-case) -> list of values
    context: dict[str, list[str]]


def malformed(message: str = "The new key policy is not valid") -> AWSError:
    return AWSError("MalformedPolicyDocumentException", message)


def _strings(value: object) -> bool:
    """A policy element that holds one string or a non-empty list of strings."""
    if isinstance(value, str):
        return True
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _check_principal(value: object) -> None:
    if value == "*":
        return
    if not isinstance(value, dict) or not value or set(value) - _PRINCIPAL_TYPES:
        raise malformed("Policy contains a statement with one or more invalid principals.")
    if not all(_strings(v) for v in value.values()) or not all(
        _AWS_PRINCIPAL.match(p) for p in _as_list(value.get("AWS"))
    ):
        raise malformed("Policy contains a statement with one or more invalid principals.")


def _check_statement(st: object, sids: set[str]) -> set[str]:
    """Shape-check one statement; return the condition keys it uses."""
    if not isinstance(st, dict) or set(st) - _STATEMENT:
        raise malformed()
    if st.get("Effect") not in (ALLOW, DENY):
        raise malformed()
    sid = st.get("Sid")
    if sid is not None:
        if not isinstance(sid, str):
            raise malformed()
        if sid and sid in sids:
            raise malformed(f"Statement IDs (SID) in a single policy must be unique: {sid}")
        sids.add(sid)
    if ("Principal" in st) == ("NotPrincipal" in st):
        raise malformed("Policy contains a statement with no principal.")
    _check_principal(st.get("Principal", st.get("NotPrincipal")))
    if ("Action" in st) == ("NotAction" in st) or not _strings(st.get("Action", st.get("NotAction"))):
        raise malformed()
    for name in ("Resource", "NotResource"):
        if name in st and not _strings(st[name]):
            raise malformed()
    if "Condition" not in st:
        return set()
    try:
        keys = conditions.validate_block(st["Condition"])
    except conditions.ConditionError:
        raise malformed("Policy contains a statement with one or more invalid condition operators or values.") \
            from None
    forbidden = [k for k in keys if _FORBIDDEN_KEYS.match(k)]
    if forbidden:
        names = [k for block in st["Condition"].values() for k in block if k.lower() in forbidden]
        raise malformed("These condition keys are not permitted in a key policy: " + ", ".join(names))
    return keys


def _statements(doc: object) -> list:
    if not isinstance(doc, dict):
        raise malformed()
    statements = doc.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise malformed()
    return statements


def parse(text: object) -> dict:
    """Validate a policy document as CreateKey / PutKeyPolicy do (MalformedPolicyDocumentException,
    LimitExceededException past 32 KB) and return its evaluable form."""
    if not isinstance(text, str) or not text.strip():
        raise malformed()
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise AWSError("LimitExceededException",
                       f"The key policy exceeds the maximum size of {MAX_POLICY_BYTES} bytes.")
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise malformed("The new key policy is not valid JSON") from None
    if not isinstance(doc, dict) or set(doc) - _TOP_LEVEL:
        raise malformed()
    if "Version" in doc and doc["Version"] not in _VERSIONS:
        raise malformed()
    if "Id" in doc and not isinstance(doc["Id"], str):
        raise malformed()
    statements = _statements(doc)
    keys: set[str] = set()
    sids: set[str] = set()
    for st in statements:
        keys |= _check_statement(st, sids)
    return {"Statement": statements, "keys": frozenset(keys)}


def load(text: str) -> dict:
    """A stored policy (accepted by an older, laxer version): never refused here; evaluation fails closed."""
    try:
        return parse(text)
    except AWSError:
        pass
    try:
        statements = [st for st in _statements(orjson.loads(text)) if isinstance(st, dict)]
    except (orjson.JSONDecodeError, AWSError):
        statements = []
    keys = {k.lower() for st in statements if isinstance(st.get("Condition"), dict)
            for block in st["Condition"].values() if isinstance(block, dict) for k in block}
    return {"Statement": statements, "keys": frozenset(keys | _PER_REQUEST_KEYS)}


def cache_scope(doc: dict, source_ip: str) -> tuple | None:
    """What an authorization verdict under ``doc`` depends on beyond principal, action and encryption context:
    None when it must not be cached (time conditions), else a tuple to add to the cache key."""
    keys = doc.get("keys", frozenset())
    if keys & _PER_REQUEST_KEYS:
        return None
    return (source_ip,) if "aws:sourceip" in keys else ()


def request_context(
    *,
    account: str,
    principal_arn: str,
    action: str,
    source_ip: str,
    via_service: str | None,
    is_service: bool,
    now: float,
    encryption_context: dict[str, str] | None = None,
    extra: dict[str, list[str]] | None = None,
) -> dict[str, list[str]]:
    """The condition keys of one request (lower-case names), as KMS sets them."""
    values: dict[str, list[str]] = {
        "kms:calleraccount": [account],
        "aws:principalaccount": [account],
        "aws:principalarn": [principal_arn],
        "aws:currenttime": [_dt.datetime.fromtimestamp(now, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")],
        "aws:epochtime": [str(int(now))],
        # this server speaks plain HTTP on loopback
        "aws:securetransport": ["false"],
    }
    if via_service:
        values["kms:viaservice"] = [via_service]
    elif not is_service and source_ip:
        # a call an AWS service makes on a caller's behalf carries no aws:SourceIp
        values["aws:sourceip"] = [source_ip]
    if action in _CRYPTO_ACTIONS:
        values["kms:encryptionalgorithm"] = ["SYMMETRIC_DEFAULT"]
    if encryption_context is not None:
        for k, v in encryption_context.items():
            values[f"kms:encryptioncontext:{k.lower()}"] = [v]
        if encryption_context:
            values["kms:encryptioncontextkeys"] = list(encryption_context)
    if extra:
        values.update({k.lower(): v for k, v in extra.items()})
    return values


def too_many_tags(code: str) -> AWSError:
    """More than 50 tags on one key: TagException in a CreateKey request, LimitExceededException when
    TagResource would push a key past the quota."""
    return AWSError(code, f"The number of tags on a KMS key cannot exceed {MAX_TAGS}.")


def grant_context(operations: list[str], grantee: str, retiring: str | None, *, aws_resource: bool) -> dict:
    """CreateGrant's own condition keys."""
    values = {"kms:GrantOperations": list(operations), "kms:GranteePrincipal": [grantee],
              "kms:GrantIsForAWSResource": ["true" if aws_resource else "false"]}
    if retiring:
        values["kms:RetiringPrincipal"] = [retiring]
    return values


def _as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _principal_matches(principal: object, req: Request) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for aws in _as_list(principal.get("AWS")):
        if not isinstance(aws, str):
            continue
        if aws == "*":
            return True
        if req.is_service:
            continue
        if aws == req.principal_arn:
            return True
        if aws == req.account or aws == f"arn:aws:iam::{req.account}:root":
            return True
    if req.is_service:
        for svc in _as_list(principal.get("Service")):
            if not isinstance(svc, str):
                continue
            # "dynamodb.amazonaws.com" names the service in every region; our callers name it regionally.
            if svc == req.principal_arn or service_root(req.principal_arn) == svc:
                return True
    return False


def _action_matches(patterns: object, action: str) -> bool:
    return any(isinstance(p, str) and conditions.like(p.lower(), action.lower()) for p in _as_list(patterns))


def _conditions_hold(cond: object, req: Request, effect: str) -> bool:
    try:
        if not isinstance(cond, dict):
            raise conditions.ConditionError("Condition")
        for operator, pairs in cond.items():
            if not isinstance(pairs, dict):
                raise conditions.ConditionError(operator)
            for key, expected in pairs.items():
                if not conditions.holds(operator, key, expected, req.context):
                    return False
    except conditions.ConditionError:
        # only a stored policy can get here: a Deny we cannot evaluate denies, an Allow does not allow
        return effect == DENY
    return True


def evaluate(doc: dict, req: Request) -> str | None:
    """``"Deny"`` on an explicit deny, ``"Allow"`` on an allow, ``None`` when no statement applies."""
    allowed = False
    for st in doc["Statement"]:
        if "Principal" in st:
            if not _principal_matches(st["Principal"], req):
                continue
        elif _principal_matches(st.get("NotPrincipal"), req):
            continue
        if "Action" in st:
            if not _action_matches(st["Action"], req.action):
                continue
        elif _action_matches(st.get("NotAction"), req.action):
            continue
        effect = st.get("Effect")
        if "Condition" in st and not _conditions_hold(st["Condition"], req, effect):
            continue
        if effect == DENY:
            return DENY
        if effect == ALLOW:
            allowed = True
    return ALLOW if allowed else None


def default_policy(account: str) -> str:
    """What KMS attaches when CreateKey has no Policy."""
    doc = {
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


def dynamodb_managed_policy(account: str, region: str) -> str:
    """Policy ``auto-dynamodb-1`` of the AWS managed key alias/aws/dynamodb."""
    return managed_policy(account, region, "dynamodb", "DynamoDB")


def dax_managed_policy(account: str, region: str) -> str:
    """Policy of the AWS managed key alias/aws/dax: aws/dynamodb's, for DAX."""
    return managed_policy(account, region, "dax", "DAX")


def managed_policy(account: str, region: str, service: str, product: str) -> str:
    """The shape every AWS managed key's policy has: use through the service by the account's principals,
    key metadata to the account and to the service itself."""
    doc = {
        "Version": "2012-10-17",
        "Id": f"auto-{service}-1",
        "Statement": [
            {
                "Sid": f"Allow access through Amazon {product} for all principals in the account that are "
                f"authorized to use Amazon {product}",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:CreateGrant",
                    "kms:DescribeKey",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "kms:CallerAccount": account,
                        "kms:ViaService": f"{service}.{region}.amazonaws.com",
                    }
                },
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
                "Resource": "*",
            },
            {
                "Sid": f"Allow {product} Service with service principal name {service}.amazonaws.com "
                "to describe "
                "the key directly",
                "Effect": "Allow",
                "Principal": {"Service": f"{service}.amazonaws.com"},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
                "Resource": "*",
            },
        ],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
