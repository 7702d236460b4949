"""The daxs:// listener's CA and node certificate (dynavault/dax/certs.py): real TLS handshakes from Python's ssl
module verifying against the server's CA, renewal of expired certificates, private keys sealed by the root of
trust (a canary scan of the data dir finds no private key), and the start-up hint naming the CA."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dynavault.dax import certs
from dynavault.kms.root import FileRoot, RootOfTrustError
from tests.canary import scan


@pytest.fixture
def root(tmp_path) -> FileRoot:
    path = tmp_path / "keys" / "root.key"
    FileRoot.create(path)
    return FileRoot(path)


def _handshake(context: ssl.SSLContext, ca: str, server_hostname: str, address: str = "127.0.0.1") -> bytes:
    """One TLS connection to a listener serving ``context``; the client verifies against ``ca`` only."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as listener:
        listener.bind((address, 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello " + tls.recv(16))
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = ssl.create_default_context(cafile=ca)  # check_hostname and CERT_REQUIRED by default
        try:
            with socket.create_connection((address, port), timeout=10) as raw:
                with client.wrap_socket(raw, server_hostname=server_hostname) as tls:
                    tls.sendall(b"dax")
                    return tls.recv(64)
        finally:
            thread.join(10)


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_handshake_verifies_against_the_ca_for_every_advertised_name(tmp_path, root):
    context = certs.server_ssl_context(tmp_path / "data", ["db.example.test"], sealer=root)
    ca = str(tmp_path / "data" / "dax-tls" / "ca.pem")
    for name in ("127.0.0.1", "localhost", "db.example.test"):
        assert _handshake(context, ca, name) == b"hello dax"
    if socket.has_ipv6:
        try:
            assert _handshake(context, ca, "::1", address="::1") == b"hello dax"
        except OSError:
            pass  # no IPv6 loopback on this machine
    # a name the certificate does not carry, and a client that trusts another CA, are both refused
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, ca, "other.example.test")
    other = certs.ensure_certificates(tmp_path / "elsewhere")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, str(other.ca_cert), "127.0.0.1")


def test_private_keys_are_sealed_and_files_owner_only(tmp_path, root):
    data = tmp_path / "data"
    files = certs.ensure_certificates(data, ["db.example.test"], sealer=root)
    assert files.sealed
    directory = data / "dax-tls"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for f in directory.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    passphrase = root.unseal((directory / ("node.key" + certs.SEALED_SUFFIX)).read_bytes(), b"dynavault:dax-tls:node.key")
    node_key = serialization.load_pem_private_key(files.node_key.read_bytes(), passphrase)
    ca_pass = root.unseal((directory / ("ca.key" + certs.SEALED_SUFFIX)).read_bytes(), b"dynavault:dax-tls:ca.key")
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), ca_pass)
    # canary scan: neither key, in any encoding, nor a clear PEM key, nor a passphrase is anywhere on disk
    canaries: list[str | bytes] = [b"BEGIN PRIVATE KEY", b"BEGIN EC PRIVATE KEY", passphrase, ca_pass]
    for key in (node_key, ca_key):
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        canaries += [scalar, scalar.hex(), key.private_bytes(serialization.Encoding.DER,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption())]
    assert scan([tmp_path / "data"], canaries) == []
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in files.node_key.read_bytes()
    # the sealed passphrase is bound to its file: the CA's cannot stand in for the node's
    with pytest.raises(RootOfTrustError):
        root.unseal((directory / ("ca.key" + certs.SEALED_SUFFIX)).read_bytes(), b"dynavault:dax-tls:node.key")


def test_without_a_sealer_keys_are_plain_0600_and_sealed_once_a_root_is_given(tmp_path, root):
    data = tmp_path / "data"
    files = certs.ensure_certificates(data)
    assert not files.sealed and b"BEGIN PRIVATE KEY" in files.node_key.read_bytes()
    assert stat.S_IMODE(files.node_key.stat().st_mode) == 0o600
    assert _handshake(certs.server_ssl_context(data), str(files.ca_cert), "localhost") == b"hello dax"
    ca_before = _cert(files.ca_cert).serial_number
    sealed = certs.ensure_certificates(data, sealer=root)
    assert sealed.sealed and not sealed.new_ca and _cert(sealed.ca_cert).serial_number == ca_before
    assert scan([data], [b"BEGIN PRIVATE KEY"]) == []
    assert _handshake(certs.server_ssl_context(data, sealer=root), str(files.ca_cert), "127.0.0.1") == b"hello dax"


def test_expired_certificates_are_made_again(tmp_path, root):
    data = tmp_path / "data"
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    first = certs.ensure_certificates(data, sealer=root, now=past, node_days=10)
    node_before, ca_before = _cert(first.node_cert), _cert(first.ca_cert)
    assert node_before.not_valid_after_utc < datetime.datetime.now(datetime.UTC)  # expired
    again = certs.ensure_certificates(data, sealer=root)
    node_after = _cert(again.node_cert)
    assert node_after.serial_number != node_before.serial_number
    assert node_after.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=300)
    assert not again.new_ca and _cert(again.ca_cert).serial_number == ca_before.serial_number  # clients keep trust
    context = certs.server_ssl_context(data, sealer=root)
    assert _handshake(context, str(again.ca_cert), "127.0.0.1") == b"hello dax"
    # an unchanged, valid pair is kept as it is
    assert _cert(certs.ensure_certificates(data, sealer=root).node_cert).serial_number == node_after.serial_number
    # a CA past its end is replaced, and the node certificate with it
    certs.ensure_certificates(tmp_path / "old", sealer=root, now=past, ca_days=20)
    renewed = certs.ensure_certificates(tmp_path / "old", sealer=root)
    assert renewed.new_ca and "a new CA was made" in certs.trust_hint(renewed)
    assert _handshake(certs.server_ssl_context(tmp_path / "old", sealer=root), str(renewed.ca_cert),
                      "localhost") == b"hello dax"


def test_a_new_host_gets_a_new_node_certificate_under_the_same_ca(tmp_path, root):
    data = tmp_path / "data"
    first = certs.ensure_certificates(data, sealer=root)
    node_before, ca_before = _cert(first.node_cert).serial_number, _cert(first.ca_cert).serial_number
    second = certs.ensure_certificates(data, ["db.example.test"], sealer=root)
    assert _cert(second.node_cert).serial_number != node_before
    assert _cert(second.ca_cert).serial_number == ca_before and not second.new_ca
    assert _handshake(certs.server_ssl_context(data, ["db.example.test"], sealer=root), str(second.ca_cert),
                      "db.example.test") == b"hello dax"


def test_server_with_a_tls_port_makes_the_ca_and_prints_how_to_trust_it(start_server):
    srv = start_server(allow_any_credentials=True, dax_tls_port=_free_port())
    ca = srv.data_dir / "dax-tls" / "ca.pem"
    out = "".join(srv.stdout_lines)
    assert f"signed by this server's own CA: {ca}" in out
    assert f"SSL_CERT_FILE={ca}" in out and f"NODE_EXTRA_CA_CERTS={ca}" in out
    assert ca.exists() and (srv.data_dir / "dax-tls" / ("node.key" + certs.SEALED_SUFFIX)).exists()
    assert scan([srv.data_dir], [b"BEGIN PRIVATE KEY", b"BEGIN EC PRIVATE KEY"]) == []
    srv.restart()  # the same CA on the next start: nothing new to trust
    assert "a new CA was made" not in "".join(srv.stdout_lines[len(out.splitlines(True)):])
    assert os.path.getsize(ca) > 0

    plain = start_server(allow_any_credentials=True)
    assert "DAX TLS" not in "".join(plain.stdout_lines) and not (plain.data_dir / "dax-tls").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_in_memory_server_keeps_no_usable_key_on_disk_and_removes_its_certificates(start_server):
    import pathlib
    import re

    srv = start_server(in_memory=True, allow_any_credentials=True, dax_tls_port=_free_port())
    out = "".join(srv.stdout_lines)
    ca = pathlib.Path(re.search(r"own CA: (\S+)", out).group(1))
    directory = ca.parent
    assert ca.exists() and not str(directory).startswith(str(srv.data_dir))
    assert scan([directory], [b"BEGIN PRIVATE KEY", b"BEGIN EC PRIVATE KEY"]) == []  # sealed by a process-only key
    assert srv.stop() == 0
    assert not directory.parent.exists()  # removed at a clean stop
