"""What the DAX control plane's operations share: DAX's quotas, error shapes, identifier and ARN checks, paging."""

from __future__ import annotations

import re
from collections.abc import Callable

from dynavault.caller import Caller
from dynavault.errors import AWSError
from dynavault.timestamps import epoch_seconds

Handler = Callable[[Caller, dict], dict]

#: DAX's quotas (per account and region, except nodes and tags)
MAX_NODES = 11
MAX_TAGS = 50
MAX_PARAMETER_GROUPS = 20
MAX_SUBNET_GROUPS = 50
MAX_SUBNETS = 20
_NAME_RE = re.compile(r"[a-z][a-z0-9-]*")
NODE_TYPE_RE = re.compile(r"dax\.(?:t2\.(?:small|medium)|t3\.(?:small|medium)"
                           r"|r[345]\.(?:large|xlarge|2xlarge|4xlarge|8xlarge|12xlarge|16xlarge|24xlarge))")
SUBNET_RE = re.compile(r"subnet-[0-9a-f]{1,32}")
DEFAULT_WINDOW = "sun:05:00-sun:06:00"


#: DAX's two generic exceptions come from its front end (Coral), not from its own model: they carry Coral's
#: namespace in ``__type`` (the faults carry DAX's, ``elmo.admin#``, the front's error prefix)
_CORAL = "com.amazon.coral.service#"
_CORAL_CODES = frozenset({"InvalidParameterValueException", "InvalidParameterCombinationException"})


def fault(code: str, message: str) -> AWSError:
    return AWSError(code, message, 400, type_prefix=_CORAL if code in _CORAL_CODES else None)


def invalid(message: str) -> AWSError:
    return fault("InvalidParameterValueException", message)


def check_identifier(name: str, what: str, max_len: int) -> str:
    """DAX identifiers: 1..max_len letters, digits and hyphens, a letter first, no trailing or double hyphen;
    stored lowercase."""
    low = name.lower()
    if not (_NAME_RE.fullmatch(low) and len(low) <= max_len and not low.endswith("-") and "--" not in low):
        # DAX's text (for clusters; the same rule words parameter and subnet group names)
        raise invalid(f"{what} specified is not a valid identifier. Identifiers must begin with a letter; must "
                       "contain only ASCII letters, digits, and hyphens; and must not end with a hyphen or "
                       "contain two consecutive hyphens.")
    return low


def check_arn(arn: str) -> None:
    # DAX's texts (the ARN parser's, recorded by moto)
    if not arn.startswith("arn:"):
        raise invalid(f"ARNs must start with 'arn:': {arn}")
    parts = arn.split(":")
    for n, message in ((3, "Second colon partition not found"), (4, "Third colon vendor not found"),
                       (5, "Fourth colon (region/namespace delimiter) not found"),
                       (6, "Fifth colon (namespace/relative-id delimiter) not found")):
        if len(parts) < n:
            raise invalid(f"{message}: {arn}")


def page_size(params: dict) -> int:
    n = params.get("MaxResults")
    if n is None:
        return 100
    if not 20 <= n <= 100:
        raise invalid("The value for MaxResults must be between 20 and 100.")  # DAX's documented rule
    return n


def page(items: list[dict], key: str, params: dict, out_key: str) -> dict:
    """One page of ``items`` (sorted by ``key``), resuming after the NextToken (the last key returned)."""
    size = page_size(params)
    token = params.get("NextToken")
    if token is not None:
        items = [i for i in items if i[key] > token]
    out: dict = {out_key: items[:size]}
    if len(items) > size:
        out["NextToken"] = items[size - 1][key]
    return out


def timestamp(value: object, member: str) -> float:
    """A request timestamp (epoch seconds or ISO 8601, as the model check let through), as epoch seconds."""
    ts = epoch_seconds(value)
    if ts is None or not -1e11 < ts < 1e11:  # beyond year 5000 either way (or not a number): no event is there
        raise invalid(f"{member} is out of range.")
    return ts
