"""Who is calling: the verified identity of a request, passed to every operation handler."""

from __future__ import annotations

from dataclasses import dataclass, replace

DYNAMODB_SERVICE = "dynamodb.amazonaws.com"


@dataclass(frozen=True, slots=True)
class Caller:
    account: str
    region: str
    principal_arn: str
    access_key: str = ""
    #: identifies the client TCP connection the request arrived on (key cache scope)
    connection_id: int = 0
    source_ip: str = "127.0.0.1"
    user_agent: str = ""
    #: host[:port] the request was addressed to (its Host header, else the listening socket): what
    #: DescribeEndpoints names
    endpoint: str = ""
    #: set when the database calls KMS on a caller's behalf: "dynamodb.<region>.amazonaws.com"
    via_service: str | None = None
    #: AWSService identity (e.g. the database's own GenerateDataKey): principal is a service principal
    is_service: bool = False

    def on_behalf(self, service_host: str) -> Caller:
        """The same principal, acting through an AWS service (kms:ViaService, invokedBy)."""
        return replace(self, via_service=service_host)

    def user_type(self) -> str:
        if self.is_service:
            return "AWSService"
        if self.principal_arn.endswith(":root"):
            return "Root"
        if ":assumed-role/" in self.principal_arn:
            return "AssumedRole"
        return "IAMUser"
