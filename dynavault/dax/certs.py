"""The DAX TLS listener's certificates: a CA of this server's own and a node certificate it signs.

DAX clients check a ``daxs://`` node's certificate against the host name they were given by discovery, so the
node certificate names every address this server advertises (127.0.0.1, ::1, localhost and the configured
host). Both are made with ``cryptography`` in ``<data dir>/dax-tls/`` on first use and made again when they
expire (or the node certificate no longer names a configured host, or was not signed by the CA found):
clients need to trust the CA once (``SSL_CERT_FILE``, ``NODE_EXTRA_CA_CERTS``), not each node certificate.

Private keys never reach the disk in the clear when a sealer is given (the server's root of trust, which
seals the KMS key material too): each key is written as an encrypted PKCS#8 PEM under a random passphrase,
and only the passphrase sealed by the root is stored beside it. A data dir copied alone then holds no usable
TLS key. Without a sealer (keys kept by a remote KMS) the keys are plain PEM files of mode 0600, as
SECURITY.md says. Either way every file here is the server user's alone.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import ipaddress
import logging
import os
import pathlib
import secrets
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("dynavault.dax")

CERT_DIR = "dax-tls"
CA_CERT, CA_KEY = "ca.pem", "ca.key"
NODE_CERT, NODE_KEY = "node.pem", "node.key"
#: the sealed passphrase of a key file is kept as <key file> + this
SEALED_SUFFIX = ".pass.sealed"
_LOCK = ".lock"
CA_DAYS = 3650
NODE_DAYS = 365
#: a certificate this close to its end is made again at the next start
_RENEW_BEFORE = _dt.timedelta(days=7)
DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")


class Sealer(Protocol):
    """What seals key passphrases: the root of trust's ``seal``/``unseal`` (kms/root.py)."""

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def unseal(self, sealed: bytes, aad: bytes) -> bytes: ...


@dataclass(frozen=True)
class TlsFiles:
    directory: pathlib.Path
    ca_cert: pathlib.Path
    node_cert: pathlib.Path
    node_key: pathlib.Path
    #: whether the private keys are encrypted under a passphrase sealed by the root of trust
    sealed: bool
    #: whether this call made a new CA (clients must trust it again)
    new_ca: bool = False


def _aad(name: str) -> bytes:
    return f"dynavault:dax-tls:{name}".encode()


def _write(path: pathlib.Path, data: bytes) -> None:
    """Owner-only, replaced atomically: a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(directory: pathlib.Path) -> Iterator[None]:
    # workers starting together must not each make a different CA
    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _save_key(path: pathlib.Path, key: ec.EllipticCurvePrivateKey, sealer: Sealer | None) -> None:
    sealed_path = path.with_name(path.name + SEALED_SUFFIX)
    if sealer is None:
        _write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        sealed_path.unlink(missing_ok=True)
        return
    passphrase = secrets.token_hex(32).encode()
    _write(sealed_path, sealer.seal(passphrase, _aad(path.name)))
    _write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.BestAvailableEncryption(passphrase)))


def _passphrase(path: pathlib.Path, sealer: Sealer | None) -> bytes | None:
    sealed_path = path.with_name(path.name + SEALED_SUFFIX)
    if not sealed_path.exists():
        return None
    if sealer is None:
        raise ValueError(f"{path} is sealed by a root of trust this server does not have")
    return sealer.unseal(sealed_path.read_bytes(), _aad(path.name))


def _load_key(path: pathlib.Path, sealer: Sealer | None) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), _passphrase(path, sealer))
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC key")
    return key


def _san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip("[]") for h in hosts if h and h not in ("0.0.0.0", "::")):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))


def _fresh(cert: x509.Certificate, now: _dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + _RENEW_BEFORE < cert.not_valid_after_utc


def _make_ca(now: _dt.datetime, days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dynavault"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"dynavault DAX CA {secrets.token_hex(4)}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _make_node(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, hosts: list[str], now: _dt.datetime,
               days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _read_cert(path: pathlib.Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def ensure_certificates(data_dir: str | os.PathLike[str], hosts: Iterable[str] = (), *,
                        sealer: Sealer | None = None, now: _dt.datetime | None = None,
                        ca_days: int = CA_DAYS, node_days: int = NODE_DAYS) -> TlsFiles:
    """The CA and node certificate in ``data_dir``, made (again) when missing, expiring, not naming every
    host, not signed by the CA, or their keys cannot be opened. ``hosts`` are added to DEFAULT_HOSTS."""
    now = now or _dt.datetime.now(_dt.UTC)
    names = [h.strip("[]") for h in dict.fromkeys([*DEFAULT_HOSTS, *hosts]) if h and h not in ("0.0.0.0", "::")]
    directory = pathlib.Path(data_dir) / CERT_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = {n: directory / n for n in (CA_CERT, CA_KEY, NODE_CERT, NODE_KEY)}
    new_ca = False
    with _locked(directory):
        ca = _read_cert(paths[CA_CERT])
        ca_key = None
        if ca is not None and _fresh(ca, now):
            try:
                ca_key = _load_key(paths[CA_KEY], sealer)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("DAX TLS: the CA key in %s cannot be opened (%s): a new CA is made", directory,
                            type(exc).__name__)
        if ca is None or ca_key is None or ca_key.public_key() != ca.public_key():
            ca_key, ca = _make_ca(now, ca_days)
            _save_key(paths[CA_KEY], ca_key, sealer)
            _write(paths[CA_CERT], ca.public_bytes(serialization.Encoding.PEM))
            new_ca = True
        node = None if new_ca else _read_cert(paths[NODE_CERT])
        usable = (node is not None and _fresh(node, now) and node.issuer == ca.subject
                  and set(names) <= _names_of(node) and _verifies(ca, node))
        if usable:
            try:
                node_key = _load_key(paths[NODE_KEY], sealer)
                usable = node_key.public_key() == node.public_key()
            except (OSError, ValueError, TypeError):
                usable = False
        if not usable:
            node_key, node = _make_node(ca_key, ca, names, now, node_days)
            _save_key(paths[NODE_KEY], node_key, sealer)
            _write(paths[NODE_CERT], node.public_bytes(serialization.Encoding.PEM))
        if sealer is not None and not paths[NODE_KEY].with_name(NODE_KEY + SEALED_SUFFIX).exists():
            # keys written in the clear by an earlier start without a sealer: sealed now
            _save_key(paths[CA_KEY], ca_key, sealer)
            _save_key(paths[NODE_KEY], node_key, sealer)
    return TlsFiles(directory, paths[CA_CERT], paths[NODE_CERT], paths[NODE_KEY], sealer is not None, new_ca)


def _verifies(ca: x509.Certificate, cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def server_ssl_context(data_dir: str | os.PathLike[str], hosts: Iterable[str] = (), *,
                       sealer: Sealer | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the node certificate (made or renewed first, see
    ``ensure_certificates``), for the ``daxs://`` listener."""
    files = ensure_certificates(data_dir, hosts, sealer=sealer)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.node_cert), str(files.node_key), password=_passphrase(files.node_key, sealer))
    return ctx


def trust_hint(files: TlsFiles) -> str:
    """What the server prints at start when it serves daxs://: where the CA is and how clients trust it."""
    ca = files.ca_cert
    return (f"dynavault: DAX TLS (daxs://) certificates are signed by this server's own CA: {ca}\n"
            f"  trust it in clients: Python/OpenSSL SSL_CERT_FILE={ca} (or add it to your CA bundle), "
            f"Node.js NODE_EXTRA_CA_CERTS={ca}"
            + ("\n  (a new CA was made: clients trusting an earlier one must trust this one)" if files.new_ca else ""))
