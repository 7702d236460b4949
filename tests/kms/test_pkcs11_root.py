"""The PKCS#11 root of trust against SoftHSM2: key material sealed by an AES key that never leaves
the token."""

from __future__ import annotations

import base64
import os
import pathlib
import shutil
import subprocess

import pytest

from dynavault.audit.trail import AuditTrail
from dynavault.caller import Caller
from dynavault.config import Settings
from dynavault.errors import StartupError
from dynavault.kms.service import KeyService

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
pytestmark = pytest.mark.skipif(
    not os.path.exists(MODULE) or not shutil.which("softhsm2-util"), reason="SoftHSM2 is not installed"
)

ALICE = Caller("111122223333", "us-east-1", "arn:aws:iam::111122223333:user/alice")


@pytest.fixture
def token(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "dv-test",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
        check=True,
        capture_output=True,
    )
    return tokens


def open_service(
    tmp_path: pathlib.Path, pin: str = "1234", label: str = "dv-root"
) -> tuple[KeyService, AuditTrail]:
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        root_of_trust="pkcs11",
        pkcs11_module=MODULE,
        pkcs11_token_label="dv-test",
        pkcs11_pin=pin,
        pkcs11_key_label=label,
        root_key_file=str(tmp_path / "must-not-exist" / "root.key"),
    )
    trail = AuditTrail(tmp_path / "data" / "audit")
    return KeyService(settings, trail), trail


def test_pkcs11_root_seals_and_survives_restart(tmp_path: pathlib.Path, token: pathlib.Path) -> None:
    kms, trail = open_service(tmp_path)
    key = kms.invoke(ALICE, "CreateKey", {})["KeyMetadata"]
    dk = kms.invoke(
        ALICE,
        "GenerateDataKey",
        {"KeyId": key["KeyId"], "KeySpec": "AES_256", "EncryptionContext": {"t": "x"}},
    )
    kms.invoke(ALICE, "RotateKeyOnDemand", {"KeyId": key["KeyId"]})
    enc = kms.invoke(
        ALICE, "Encrypt", {"KeyId": key["KeyId"], "Plaintext": base64.b64encode(b"hsm").decode()}
    )
    assert "Pkcs11Root" in repr(kms._root)
    kms.close()
    trail.close()
    assert not (tmp_path / "must-not-exist").exists()  # no root key file in pkcs11 mode

    kms, trail = open_service(tmp_path)
    back = kms.invoke(
        ALICE, "Decrypt", {"CiphertextBlob": dk["CiphertextBlob"], "EncryptionContext": {"t": "x"}}
    )
    assert back["Plaintext"] == dk["Plaintext"]
    assert (
        base64.b64decode(kms.invoke(ALICE, "Decrypt", {"CiphertextBlob": enc["CiphertextBlob"]})["Plaintext"])
        == b"hsm"
    )
    kms.close()
    trail.close()
    plain = base64.b64decode(dk["Plaintext"])
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert plain not in content and dk["Plaintext"].encode() not in content


def test_pkcs11_material_does_not_open_under_another_token_key(
    tmp_path: pathlib.Path, token: pathlib.Path
) -> None:
    kms, trail = open_service(tmp_path)
    kms.invoke(ALICE, "CreateKey", {})
    kms.close()
    trail.close()
    # another label names no key on the token: with key material in the data dir the service refuses to
    # start and generates no new token key (issue 12 item 6); it starts again with the right label
    for _ in range(2):
        with pytest.raises(StartupError, match="is missing"):
            open_service(tmp_path, label="dv-other-root")
    kms, trail = open_service(tmp_path)
    kms.close()
    trail.close()
