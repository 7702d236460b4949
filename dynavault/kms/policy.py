"""Key policy evaluation: the subset of IAM policy language that KMS key policies use in practice.

Explicit Deny wins, then any Allow. Principals: ``*``, account ids and ``arn:aws:iam::<acct>:root`` (any
principal of that account: we have no IAM, so delegation to IAM is assumed to allow), principal ARNs and
``Service`` principals. Conditions: String(Not)Equals / String(Not)Like (+IfExists,
ForAnyValue:/ForAllValues:)
and Bool over the request context (``kms:CallerAccount``, ``kms:ViaService``, ``kms:EncryptionContext:<k>``,
``kms:EncryptionContextKeys``, ``aws:PrincipalArn``, ``aws:PrincipalAccount``, ``kms:GrantIsForAWSResource``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import orjson

from dynavault.errors import AWSError

ALLOW = "Allow"
DENY = "Deny"


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


def parse(text: str) -> dict:
    """Parse and shape-check a policy document (raises MalformedPolicyDocumentException)."""
    if not isinstance(text, str) or not text.strip():
        raise malformed()
    if len(text) > 32768:
        raise AWSError(
            "ValidationException",
            "1 validation error detected: Value at 'policy' failed to satisfy constraint: "
            "Member must have length less than or equal to 32768",
        )
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise malformed("The new key policy is not valid JSON") from None
    if not isinstance(doc, dict):
        raise malformed()
    statements = doc.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise malformed()
    for st in statements:
        if not isinstance(st, dict) or st.get("Effect") not in (ALLOW, DENY):
            raise malformed()
        if "Principal" not in st and "NotPrincipal" not in st:
            raise malformed("Policy contains a statement with no principal.")
        if "Action" not in st and "NotAction" not in st:
            raise malformed()
        cond = st.get("Condition", {})
        if not isinstance(cond, dict) or not all(isinstance(v, dict) for v in cond.values()):
            raise malformed()
    return {"Statement": statements}


@lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> re.Pattern:
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
        re.IGNORECASE | re.DOTALL,
    )


def _like(pattern: str, value: str) -> bool:
    if "*" not in pattern and "?" not in pattern:
        return pattern == value
    return _wildcard(pattern).fullmatch(value) is not None


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
            if svc == req.principal_arn or _service_root(req.principal_arn) == svc:
                return True
    return False


def _service_root(principal: str) -> str:
    """dynamodb.us-east-1.amazonaws.com -> dynamodb.amazonaws.com"""
    parts = principal.split(".")
    if len(parts) == 4 and parts[2] == "amazonaws":
        return f"{parts[0]}.amazonaws.com"
    return principal


def _action_matches(patterns: object, action: str) -> bool:
    return any(isinstance(p, str) and _like(p.lower(), action.lower()) for p in _as_list(patterns))


def _condition_holds(operator: str, key: str, expected: object, req: Request) -> bool:
    op = operator
    quantifier = ""
    if ":" in op:
        quantifier, op = op.split(":", 1)
        quantifier = quantifier.lower()
    if_exists = op.endswith("IfExists")
    if if_exists:
        op = op[: -len("IfExists")]
    values = req.context.get(key.lower())
    expected_values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(expected)]
    negated = op in ("StringNotEquals", "StringNotLike", "StringNotEqualsIgnoreCase")
    if values is None:
        if quantifier == "forallvalues":
            return True
        return if_exists or negated

    def one(value: str) -> bool:
        if op in ("StringEquals", "StringNotEquals"):
            hit = value in expected_values
        elif op in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
            hit = value.lower() in (e.lower() for e in expected_values)
        elif op in ("StringLike", "StringNotLike"):
            hit = any(_like(e, value) for e in expected_values)
        elif op == "Bool":
            hit = value.lower() in (e.lower() for e in expected_values)
        elif op == "Null":
            return ("true" if values is None else "false") in expected_values
        else:
            return False  # an operator we do not evaluate never grants access
        return not hit if negated else hit

    if quantifier == "forallvalues":
        return all(one(v) for v in values)
    return any(one(v) for v in values)


def _conditions_hold(cond: dict, req: Request) -> bool:
    for operator, pairs in cond.items():
        if operator == "Null":
            for key, expected in pairs.items():
                missing = req.context.get(key.lower()) is None
                if ("true" if missing else "false") not in [str(e).lower() for e in _as_list(expected)]:
                    return False
            continue
        for key, expected in pairs.items():
            if not _condition_holds(operator, key, expected, req):
                return False
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
        if not _conditions_hold(st.get("Condition") or {}, req):
            continue
        if st["Effect"] == DENY:
            return DENY
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
    doc = {
        "Version": "2012-10-17",
        "Id": "auto-dynamodb-1",
        "Statement": [
            {
                "Sid": "Allow access through Amazon DynamoDB for all principals in the account that are "
                "authorized to use Amazon DynamoDB",
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
                        "kms:ViaService": f"dynamodb.{region}.amazonaws.com",
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
                "Sid": "Allow DynamoDB Service with service principal name dynamodb.amazonaws.com "
                "to describe "
                "the key directly",
                "Effect": "Allow",
                "Principal": {"Service": "dynamodb.amazonaws.com"},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
                "Resource": "*",
            },
        ],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
