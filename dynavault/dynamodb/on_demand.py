"""OnDemandThroughput maximums of on-demand tables and their GSIs: validation, merge and description.

A table keeps its maximums in the catalog's ``extra`` (``ON_DEMAND``), a GSI in its definition dict under
``OnDemandThroughput``; both hold only the members that are set (units per second, 1 or more). DynamoDB's
rules, as observed against the service: the struct is absent from DescribeTable unless a maximum was set; a
request member 1 or more sets that maximum; -1 clears it on UpdateTable (it is out of range on CreateTable);
maximums are refused on a PROVISIONED table. Texts are DynamoDB's. One difference: after UpdateTable clears
one member while the other stays set, DynamoDB echoes the cleared one as -1 (in the UpdateTable answer and for
about a second in DescribeTable) and then omits it; here it is shown as -1 for as long as the other is set.
"""

from __future__ import annotations

from dynavault.errors import validation

_INVALID = "One or more parameter values were invalid: "
MEMBERS = ("MaxReadRequestUnits", "MaxWriteRequestUnits")
#: catalog ``extra`` member holding an on-demand table's maximums
ON_DEMAND = "on_demand"
#: a GSI definition's member holding its maximums
INDEX_MEMBER = "OnDemandThroughput"


def _where(index: str | None, sep: str) -> str:
    return "table" if index is None else f"index{sep}{index}"


def merge(spec: object, current: dict, billing: str, *, index: str | None = None, update: bool = False) -> dict:
    """``current`` with ``spec`` (a request's OnDemandThroughput) applied; ``update``: -1 clears a member."""
    if spec is None:
        return current
    if not isinstance(spec, dict):
        raise validation(_INVALID + "OnDemandThroughput must be a structure")
    present = [m for m in MEMBERS if m in spec]
    if present and billing != "PAY_PER_REQUEST":
        where = "" if index is None else f" for index: {index}"
        raise validation(_INVALID + f"{present[0]} for OnDemandThroughput{where} cannot be specified when the "
                         "table BillingMode is PROVISIONED")
    out = dict(current)
    for member in present:
        value = spec[member]
        ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or (update and value == -1))
        if not ok:
            raise validation(_INVALID + f"Requested {member} for OnDemandThroughput for {_where(index, ' : ')} "
                             "is outside of valid range")
        if value == -1:
            out.pop(member, None)
        else:
            out[member] = value
    return out


def describe(maximums: dict | None) -> dict | None:
    """The OnDemandThroughput a description shows: absent when nothing is set, -1 for a member not set."""
    if not maximums:
        return None
    return {m: maximums.get(m, -1) for m in MEMBERS}


def limit(maximums: dict | None, kind: str) -> float | None:
    """The maximum units per second of ``kind`` ("read" | "write"), or None when none is set."""
    units = (maximums or {}).get(MEMBERS[0] if kind == "read" else MEMBERS[1])
    return float(units) if units else None
