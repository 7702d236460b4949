"""PartiQL: ExecuteStatement, BatchExecuteStatement, ExecuteTransaction (placeholder until the parser lands)."""

from __future__ import annotations

HANDLERS: dict = {}
