"""The narrow context every operation handler gets: the key ring (state and material) and the authorizer.

Handlers never see the service object, so an operation module can reach only what this offers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dynavault.caller import Caller
from dynavault.kms.authz import Authorizer
from dynavault.kms.keyring import KeyRing
from dynavault.kms.model import CallInfo


@dataclass(frozen=True)
class KmsContext:
    ring: KeyRing
    authz: Authorizer


#: an operation handler: (context, caller, wire params, the call's audit info) -> wire response
Handler = Callable[[KmsContext, Caller, dict, CallInfo], dict]
