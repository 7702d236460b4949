"""The DAX wiring: the control plane's operations (audited), its TLS certificates, the data-plane listeners."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dynavault.config import Settings
from dynavault.storage.signal import ChangeSignal

from ..app import RouteTable
from ..connection import Connections
from ..credentials import CredentialStore
from ..metrics import Metrics
from .common import DYNAMODB

log = logging.getLogger("dynavault.server")


def audited(trail, name: str, handler: Callable, read_only: bool) -> Callable:
    """A DAX control-plane handler whose every call (failed ones too) is an AwsApiCall event in the caller's
    trail, as the key service's calls are."""
    from dynavault.audit import events
    from dynavault.errors import AWSError

    def record(caller, params: dict, response: dict | None, err: AWSError | None) -> None:
        arns = {c["ClusterArn"] for c in [(response or {}).get("Cluster") or {}] if c.get("ClusterArn")}
        if not arns and isinstance(params.get("ClusterName"), str):
            arns.add(f"arn:aws:dax:{caller.region}:{caller.account}:cache/{params['ClusterName'].lower()}")
        if isinstance(params.get("ResourceName"), str):
            arns.add(params["ResourceName"])
        event = events.api_call(
            source="dax.amazonaws.com", name=name, caller=caller, now=time.time(),
            request=events.request_parameters(params, ()),
            response=None if read_only or response is None else events.camel(response), read_only=read_only,
            resources=[events.resource(caller.account, "AWS::DAX::Cluster", a) for a in sorted(arns)], error=err)
        try:
            for ev in events.fan_out(event, [caller.account]):
                trail.record(ev)
        except Exception:
            log.exception("audit record failed")
            if err is None:
                raise

    def call(caller, params: dict) -> dict:
        try:
            response = handler(caller, params)
        except AWSError as err:
            record(caller, params, None, err)
            raise
        except Exception:
            record(caller, params, None, AWSError("InternalFailure", "An internal error occurred.", 500))
            raise
        record(caller, params, response, None)
        return response

    call.__name__ = name
    return call


def dax_control_plane(settings: Settings, store, signal: ChangeSignal, trail, components: dict[str, object],
         closers: list[Callable[[], None]], announce: bool, keys) -> dict:
    """The DAX control plane's operations (audited), and what the data plane needs from it: the cluster
    records (``components["dax_clusters"]``: ``ttls_for(port, account, region)``) and, with a TLS port, the
    server's CA and node certificate (``components["dax_ssl_context"]``)."""
    from dynavault.dax.cluster_keys import ClusterKeys
    from dynavault.dax.clusters import ClusterRecords, advertised_host
    from dynavault.dax.control import READ_ONLY, ControlPlane

    # encrypted clusters' keys under alias/aws/dax, through the database's key port (audited as DynamoDB's)
    cluster_keys = ClusterKeys(
        lambda who, key, ctx: keys.call("GenerateDataKey", keys.kms.generate_data_key, who, key, ctx),
        lambda who, blob, ctx: keys.call("Decrypt", keys.kms.decrypt, who, blob, ctx))
    records = ClusterRecords(store, dax_port=settings.dax_port or None, dax_tls_port=settings.dax_tls_port or None,
                             signal=signal, keys=cluster_keys)
    components["dax_clusters"] = records
    if settings.dax_tls_port:
        components["dax_ssl_context"] = dax_tls_context(settings, advertised_host(settings.host), closers,
                                                   announce)
    plane = ControlPlane(records, settings, keys=cluster_keys)
    return {name: audited(trail, name, handler, name in READ_ONLY) for name, handler in plane.operations().items()}


def dax_tls_context(settings: Settings, host: str, closers: list[Callable[[], None]], announce: bool):
    """The daxs:// listener's SSL context, its certificates made or renewed in the data dir (in a temporary
    directory with --in-memory), their private keys sealed by the root of trust when this server has one;
    the CA's path printed with how to trust it."""
    import shutil
    import tempfile

    from dynavault.dax import certs
    from dynavault.kms.root import MemoryRoot, open_root

    if settings.in_memory:
        # ssl loads certificates from files only: a temporary directory, removed at close, its keys sealed by
        # a key that lives in this process alone (nothing usable is left on disk)
        where = tempfile.mkdtemp(prefix="dynavault-dax-tls-")
        closers.append(lambda: shutil.rmtree(where, ignore_errors=True))
        root = MemoryRoot()
    else:
        where = str(settings.data_path())
        # the same root that seals the KMS key material; a remote KMS leaves none here (keys then 0600,
        # SECURITY.md)
        root = None if settings.kms_endpoint else open_root(settings)
    try:
        hosts = [settings.host, host]
        files = certs.ensure_certificates(where, hosts, sealer=root)
        context = certs.server_ssl_context(where, hosts, sealer=root)
    finally:
        if root is not None:
            root.close()
    if announce:  # with workers: once, by the first
        print(certs.trust_hint(files), flush=True)
    return context


def dax_listeners(settings: Settings, routes: RouteTable, credentials: CredentialStore, connections: Connections,
                   durability, metrics: Metrics, worker: bool, db, store, ssl_context, clusters=None) -> list:
    """The DAX data-plane listeners (dax:// on --dax-port, daxs:// on --dax-tls-port), running DynamoDB's own
    operation callables (shape validation, then the handler) as the DAX connection's signed-in principal.
    ``clusters``: the control plane's records (a cluster's parameter group sets its listener's cache TTLs)."""
    import math

    from dynavault.dax.cache import DaxCache
    from dynavault.dax.listener import DaxListener
    from dynavault.dax.operations import Engine
    from dynavault.dax.protocol import verify_authorization
    from dynavault.dax.registry import AttributeLists
    from dynavault.dax.registry_store import StoreBackend
    from dynavault.errors import AWSError
    from dynavault.storage.sealed import CatalogRecord, Sealed

    keys = db.keys

    def registry_context(account: str) -> dict[str, str]:
        return {"aws:dax:subscriberId": account, "aws:dax:purpose": "attribute-lists"}

    def generate_key(scope: str) -> tuple[bytes, bytes]:
        # DAX encrypts with service keys only: the AWS owned key, as for a table of SSE type OWNED
        account, region = scope.split("/", 1)
        generator = keys.service_caller(keys.owned_account, region)
        plaintext, blob = keys.call("GenerateDataKey", keys.kms.generate_data_key, generator,
                                    keys.owned_key_arn(region), registry_context(account))
        return plaintext, blob

    def decrypt_key(scope: str, blob: bytes) -> bytes:
        account, region = scope.split("/", 1)
        return keys.call("Decrypt", keys.kms.decrypt, keys.service_caller(keys.owned_account, region), blob,
                         registry_context(account))

    def table_keys(caller, name: str):
        meta = db.data_table(caller, name)
        return meta.id_bytes, db.crypto(caller, meta)

    def cluster_ttls(port: int, account: str, region: str) -> tuple[float, float] | None:
        # a cluster of this account and region served on the listener sets its TTLs; DAX's record TTL 0 is
        # "infinite" (entries leave by write-through or eviction), a query TTL 0 caches no query
        ttls = clusters.cluster_ttls(port, account, region) if clusters is not None else None
        if ttls is None:
            return None
        return (ttls.record_millis / 1000 if ttls.record_millis else math.inf), ttls.query_millis / 1000

    cache = DaxCache(table_keys, record_ttl=settings.dax_record_ttl_seconds,
                     query_ttl=settings.dax_query_ttl_seconds, ttls=cluster_ttls)
    backend = StoreBackend(store, sealed=Sealed, record=CatalogRecord, generate_key=generate_key,
                           decrypt_key=decrypt_key, refresh_seconds=settings.key_refresh_seconds)

    def invoke(operation: str, caller, params: dict) -> dict:
        route = routes.get(f"{DYNAMODB.target_prefix}.{operation}")
        if route is None:
            raise AWSError("UnknownOperationException", f"{operation} is not served here")
        params = route.front.validate(operation, params)
        return route.handler(caller, params)

    def authorize(access_key, signature, string_to_sign, token):
        auth = verify_authorization(credentials.lookup, credentials.allow_any, access_key, signature,
                                    string_to_sign, token)
        if settings.shared_db:  # one account and region for every caller, as the HTTP API's SharedDbVerifier
            from dataclasses import replace

            from ..local_dev import SHARED_REGION

            auth = replace(auth, account=settings.default_account, region=SHARED_REGION,
                           principal_arn=auth.principal_arn.replace(f"::{auth.account}:",
                                                                    f"::{settings.default_account}:", 1))
        return auth

    engine = Engine(invoke, AttributeLists(backend, settings.dax_attribute_lists_max), cache)
    if clusters is not None:
        clusters.start_serving()
    ports = [(port, context) for port, context in ((settings.dax_port, None), (settings.dax_tls_port, ssl_context))
             if port]
    return [DaxListener(engine, authorize, host=settings.host, port=port, ssl_context=context,
                        new_connection_id=connections.new_id, connection_closed=connections.closed,
                        settle=durability.settle if durability is not None else None,
                        pending=durability.pending if durability is not None else None,
                        threaded=bool(settings.kms_endpoint), observe=metrics.observe_request, reuse_port=worker)
            for port, context in ports]
