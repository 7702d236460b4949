"""Request shape validation from the botocore service models.

AWS's JSON front end (Coral) checks every request against the operation's input shape before any
business logic runs, in two steps that we reproduce:

1. *Deserialization*: a JSON value of the wrong kind aborts at once with a
   ``com.amazon.coral.service#SerializationException`` naming only the problem (never the member),
   for the first offending value in body order.
2. *Constraint validation*: every ``required``/``min``/``max``/``pattern``/``enum`` violation is
   collected into one ``com.amazon.coral.validate#ValidationException``:
   ``N validation errors detected: Value 'x' at 'a.b' failed to satisfy constraint: ...; ...``.

Ordering rules (reverse-engineered from recorded AWS answers, see tests/server/test_shapes.py):

* Members of a structure are reported in Java 8 ``HashMap`` iteration order of their lower-first
  names (the service validates a generated map of members), nested errors staying with their member.
* Enum value sets are printed in the order ``String.hashCode() & 31`` (later model entries first
  within a bucket); this reproduces e.g. ``[ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]``.
* List elements are ``name.<1-based index>.member``; map values are ``name.<key>.member``.

Everything is compiled once per service into small node objects; a request only walks the nodes
for the members it actually carries. This module compiles a model and validates requests; the nodes are in
``shape_nodes.py``, the error texts and the violation list in ``shape_text.py``.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from typing import Any

import orjson

from dynavault.errors import AWSError

from .java_rules import hashmap_order
from .plain_requests import PLAIN_MEMBERS, plain_request
from .shape_nodes import (
    BlobNode,
    BoolNode,
    ListNode,
    MapNode,
    Node,
    NumberNode,
    StringNode,
    StructNode,
    TimestampNode,
)
from .shape_text import SER_PREFIX, START_OBJ, VAL_PREFIX, Violations, serialization_error, without_nulls

_MAX_REPORTED = 10  # AWS stops collecting after ten violations (dynalite's observation)

# Java class packages the services' generated model classes live in (shown in some type errors).
_JAVA_NS = {
    "dynamodb": "com.amazonaws.dynamodb.v20120810",
    "dynamodbstreams": "com.amazonaws.dynamodb.v20120810",
    "kms": "com.amazonaws.kms",
    "cloudtrail": "com.amazonaws.cloudtrail.v20131101",
    "dax": "com.amazonaws.dax",
}

_SERVICE_VERSIONS = {
    "dynamodb": "2012-08-10",
    "dynamodbstreams": "2012-08-10",
    "kms": "2014-11-01",
    "cloudtrail": "2013-11-01",
    "dax": "2017-04-19",
}

# Where the live service is stricter than today's model (observed answers, see module doc/report).
# (The table's own KeySchema is held to 2 elements by the CreateTable handler: the same shape also
# serves multi-attribute GSI keys, which may have up to 8.)
_SHAPE_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {}


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


class _Compiler:
    def __init__(self, service: str, model: dict) -> None:
        self.shapes: dict[str, dict] = model["shapes"]
        self.ns = _JAVA_NS.get(service, "com.amazonaws")
        self.service = service
        self.memo: dict[tuple[str, str, bool], Node] = {}

    def node(self, shape_name: str, pos: str, member_name: str = "") -> Node:
        """pos: 'field' (structure member), 'value' (list element/map value), 'nested' (list in list)."""
        shape = self.shapes[shape_name]
        override = _SHAPE_OVERRIDES.get((self.service, shape_name))
        if override:
            shape = {**shape, **override}
        t = shape["type"]
        table_name = (
            self.service == "dynamodb" and shape_name == "TableArn" and member_name in ("TableName", "")
        )
        key = (shape_name, pos, table_name)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        node: Node
        if t == "string":
            node = StringNode(shape, table_name)
        elif t == "boolean":
            node = BoolNode()
        elif t in ("integer", "long", "double", "float"):
            node = NumberNode(shape, {"integer": "Integer", "long": "Long", "double": "Double",
                                       "float": "Float"}[t])
        elif t == "blob":
            node = BlobNode(shape)
        elif t == "timestamp":
            node = TimestampNode()
        elif t == "list":
            node = ListNode(shape, nested=pos != "field")
            self.memo[key] = node
            node.member = self.node(shape["member"]["shape"], "value")
            node.pure = node.pure and not shape.get("min") and shape.get("max") is None
        elif t == "map":
            node = MapNode(shape, nested=pos != "field")
            self.memo[key] = node
            kn = self.node(shape["key"]["shape"], "field", member_name="TableName")
            node.key = kn if isinstance(kn, StringNode) else None
            node.value = self.node(shape["value"]["shape"], "value")
            node.java_value = self.java_class(shape["value"]["shape"])
            node.key_text = ", ".join(kn.constraint_texts())
            node.value_text = ", ".join(node.value.constraint_texts())
            node.pure = not shape.get("min") and shape.get("max") is None and not node.key_text
        elif t == "structure":
            node = StructNode(shape_name, pos != "field", f"{self.ns}.{shape_name}")
            self.memo[key] = node
            names = list(shape.get("members", {}))
            rank = hashmap_order([_lower_first(n) for n in names], later_first=True)
            members = {}
            for n, m in shape.get("members", {}).items():
                sub = self.node(m["shape"], "field", member_name=n)
                members[n] = (sub, _lower_first(n), rank[_lower_first(n)])
            node.members = members
            node.required = tuple(
                (n, _lower_first(n), rank[_lower_first(n)]) for n in shape.get("required", ())
            )
            node.pure = not node.required
        else:
            raise ValueError(f"unsupported shape type {t!r} in {shape_name}")
        self.memo[key] = node
        return node

    def java_class(self, shape_name: str) -> str:
        t = self.shapes[shape_name]["type"]
        simple = {"string": "java.lang.String", "boolean": "java.lang.Boolean",
                  "integer": "java.lang.Integer",
                  "long": "java.lang.Long", "double": "java.lang.Double", "float": "java.lang.Float",
                  "blob": "java.nio.ByteBuffer", "timestamp": "java.util.Date"}
        if t in simple:
            return simple[t]
        if t == "list":
            return f"java.util.List<{self.java_class(self.shapes[shape_name]['member']['shape'])}>"
        if t == "map":
            value = self.java_class(self.shapes[shape_name]["value"]["shape"])
            return f"java.util.Map<java.lang.String, {value}>"
        return f"{self.ns}.{shape_name}"

    def finish(self) -> None:
        """Purity depends on children, including recursive ones: settle it by fixed point."""
        changed = True
        while changed:
            changed = False
            for node in self.memo.values():
                if not node.pure:
                    continue
                impure = False
                if isinstance(node, StructNode):
                    impure = any(not m[0].pure for m in node.members.values())
                elif isinstance(node, ListNode):
                    impure = not node.member.pure
                elif isinstance(node, MapNode):
                    impure = not node.value.pure
                if impure:
                    node.pure = False
                    changed = True


def _model_dirs() -> list[str]:
    """Where botocore's Loader() looks for a data file, in its order: the user's ~/.aws/models, then the models
    botocore ships. Found without importing botocore (its loader module pulls in urllib3 and some 60 other
    modules, ~0.1 s of every server start, for five file reads)."""
    spec = importlib.util.find_spec("botocore")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("botocore is not installed: it ships the service models requests are checked against")
    return [os.path.join(os.path.expanduser("~"), ".aws", "models"),
            os.path.join(list(spec.submodule_search_locations)[0], "data")]


def _load_model(service: str) -> dict:
    if service not in _SERVICE_VERSIONS:
        raise ValueError(f"unknown service {service!r}")
    # the model file by its path, as botocore.loaders.Loader().load_data would find it (.json, then .json.gz):
    # load_service_model first lists every service botocore ships (a directory walk per call) only to check
    # the name, which is fixed here
    name = os.path.join(service, _SERVICE_VERSIONS[service], "service-2")
    for base in _model_dirs():
        path = os.path.join(base, name)
        if os.path.isfile(path + ".json"):
            with open(path + ".json", "rb") as f:
                return orjson.loads(f.read())
        if os.path.isfile(path + ".json.gz"):
            with gzip.open(path + ".json.gz", "rb") as f:
                return orjson.loads(f.read())
    raise RuntimeError(f"botocore's model of {service} not found (looked in {', '.join(_model_dirs())})")


class ShapeValidator:
    """Validates request bodies against one service's botocore model, the way AWS's front end does."""

    def __init__(self, service: str) -> None:
        model = _load_model(service)
        compiler = _Compiler(service, model)
        self.service = service
        self._ops: dict[str, StructNode | None] = {}
        for op_name, op in model["operations"].items():
            inp = op.get("input")
            node = compiler.node(inp["shape"], "field") if inp else None
            self._ops[op_name] = node if isinstance(node, StructNode) else None
        compiler.finish()
        self._plain = PLAIN_MEMBERS if service == "dynamodb" else {}

    def has_operation(self, name: str) -> bool:
        return name in self._ops

    def validate(self, operation: str, body: dict) -> dict:
        """Raise AWSError (SerializationException / ValidationException) if ``body`` is malformed; else the
        request as its handler gets it: ``body`` itself, or a copy without the members sent as JSON null."""
        try:
            root = self._ops[operation]
        except KeyError:
            raise AWSError("UnknownOperationException", None, 400, type_prefix=SER_PREFIX) from None
        if root is None:
            return body
        if type(body) is not dict:
            raise serialization_error(START_OBJ if body is None else "Unexpected value type in payload")
        plain = self._plain.get(operation)
        if plain is not None and plain_request(plain[0], plain[1], body):
            return body
        errs = Violations()
        root.check(body, "", errs)
        if errs:
            shown = errs[:_MAX_REPORTED]
            n = len(shown)
            raise AWSError(
                "ValidationException",
                f"{n} validation error{'s' if n != 1 else ''} detected: " + "; ".join(shown),
                400,
                type_prefix=VAL_PREFIX,
            )
        return without_nulls(body, errs.nulls) if errs.nulls else body
