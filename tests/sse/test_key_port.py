"""``sse`` against a fake key port (no server): typed KMS failures become DynamoDB's wrapped errors, the
table-key cache refreshes on an injected clock and fails closed, a failed table key leaves no grant."""

from __future__ import annotations

import pytest

from dynavault.errors import AWSError
from dynavault.sse.key_port import (
    AccessDenied,
    InvalidCiphertext,
    InvalidKeyRequest,
    KeyDisabled,
    KeyInvalidState,
    KeyNotFound,
    KeyPortError,
    KeyThrottled,
    KeyUnavailable,
    KmsFailure,
    key_error,
)
from dynavault.sse.kms_errors import wrap_kms_error
from dynavault.sse.table_keys import CUSTOMER, OWNED, TableKeyService
from tests.sse.fake_key_port import ACCOUNT, ARN, OWNED_ACCOUNT, USER, Clock, FakeKeys, table


def service(port: FakeKeys, clock: Clock) -> TableKeyService:
    return TableKeyService(port, owned_key_arn=lambda region: "owned", owned_account=OWNED_ACCOUNT,
                           refresh_seconds=300.0, clock=clock)


@pytest.mark.parametrize(("error", "code", "status", "text"), [
    (KeyDisabled("DisabledException", "k is disabled."), "ValidationException", 400,
     "KMS key disabled error: com.amazonaws.services.kms.model.DisabledException: k is disabled. (Service: AWSKMS; "
     "Status Code: 400; Error Code: DisabledException; Request ID: "),
    (KeyInvalidState("KMSInvalidStateException", "k is pending deletion."), "ValidationException", 400,
     "KMS validation error: com.amazonaws.services.kms.model.KMSInvalidStateException: k is pending deletion. "),
    (KeyNotFound("NotFoundException", "gone"), "ValidationException", 400,
     "KMS validation error: com.amazonaws.services.kms.model.NotFoundException: gone (Service: AWSKMS; "),
    (InvalidKeyRequest("ValidationException", "bad"), "ValidationException", 400,
     "KMS validation error: com.amazonaws.services.kms.model.ValidationException: bad "),
    (AccessDenied("AccessDeniedException", "no"), "AccessDeniedException", 400,
     "KMS key access denied error: com.amazonaws.services.kms.model.AWSKMSException: no (Service: AWSKMS; "
     "Status Code: 400; Error Code: AccessDeniedException; "),
    (KeyThrottled("LimitExceededException", "slow"), "ThrottlingException", 400,
     "KMS throttling error: com.amazonaws.services.kms.model.LimitExceededException: slow "),
    (KeyUnavailable("KMSUnavailable", "KMS endpoint unreachable: TimeoutError", 500), "InternalServerError", 500,
     "KMS unavailable error: KMS endpoint unreachable: TimeoutError"),
    (InvalidCiphertext("InvalidCiphertextException", "", 400), "InternalServerError", 500,
     "KMS internal error: com.amazonaws.services.kms.model.AWSKMSException:  (Service: AWSKMS; Status Code: 400; "
     "Error Code: InvalidCiphertextException; "),
    (KmsFailure("KMSInternalException", "boom", 500), "InternalServerError", 500,
     "KMS internal error: com.amazonaws.services.kms.model.AWSKMSException: boom (Service: AWSKMS; "
     "Status Code: 500; "),
])
def test_typed_errors_become_dynamodb_errors(error: KeyPortError, code: str, status: int, text: str) -> None:
    wrapped = wrap_kms_error(error)
    assert (wrapped.code, wrapped.status) == (code, status)
    assert wrapped.message.startswith(text)
    # a KMS error recorded by code (an inaccessible table's catalog) reads the same
    again = wrap_kms_error(AWSError(error.code, error.message, error.status))
    assert (again.code, again.status) == (code, status)
    assert again.message.split(" Request ID: ")[0] == wrapped.message.split(" Request ID: ")[0]


def test_codes_map_to_types() -> None:
    assert type(key_error("DisabledException")) is KeyDisabled
    assert type(key_error("InvalidArnException")) is KeyNotFound
    assert type(key_error("ThrottlingException")) is KeyThrottled
    assert type(key_error("IncorrectKeyException")) is InvalidCiphertext
    assert type(key_error("KMSUnavailable", "", 500)) is KeyUnavailable
    unknown = key_error("DependencyTimeoutException", "late", 500)
    assert type(unknown) is KmsFailure and unknown.code == "DependencyTimeoutException"


def test_cache_refreshes_on_the_clock_and_fails_closed() -> None:
    port, clock = FakeKeys(), Clock()
    keys = service(port, clock)
    ref = table(keys)
    first = keys.crypto_for(USER, ref)
    assert keys.crypto_for(USER, ref) is first
    decrypts = [c for c in port.calls if c[0] == "Decrypt"]
    assert decrypts == [("Decrypt", USER.principal_arn)]  # one Decrypt fills the entry, as the user
    clock.now += 299.0
    keys.crypto_for(USER, ref)
    assert len([c for c in port.calls if c[0] == "Decrypt"]) == 1
    clock.now += 2.0  # past the refresh interval: the next request decrypts again
    keys.crypto_for(USER, ref)
    assert len([c for c in port.calls if c[0] == "Decrypt"]) == 2
    port.state[ARN] = "Disabled"
    clock.now += 301.0
    with pytest.raises(AWSError) as err:
        keys.crypto_for(USER, ref)
    assert err.value.code == "ValidationException"
    assert err.value.message.startswith("KMS key disabled error: ")
    assert keys.cached_entries() == 0  # the expired entry is gone, never served again
    with pytest.raises(AWSError):
        keys.crypto_for(USER, ref)


def test_background_decrypt_raises_typed_errors() -> None:
    port, clock = FakeKeys(), Clock()
    keys = service(port, clock)
    ref = table(keys)
    who = keys.key_service(ACCOUNT, "us-east-1", ref.sse)
    assert who.is_service and who.principal_arn == "dynamodb.us-east-1.amazonaws.com"
    assert len(keys.decrypt_table_key(who, "t1", ACCOUNT, ref.sse, wrap=False)) == 32
    port.fail["Decrypt"] = AccessDenied("AccessDeniedException", "grant revoked")
    with pytest.raises(AccessDenied) as err:
        keys.decrypt_table_key(who, "t1", ACCOUNT, ref.sse, wrap=False)
    assert err.value.code == "AccessDeniedException"
    # bound to the table's encryption context: another table name does not open it
    del port.fail["Decrypt"]
    with pytest.raises(InvalidCiphertext):
        keys.decrypt_table_key(who, "t2", ACCOUNT, ref.sse, wrap=False)


def test_failed_table_key_retires_its_grant() -> None:
    port, clock = FakeKeys(), Clock()
    keys = service(port, clock)
    port.fail["GenerateDataKey"] = KeyThrottled("ThrottlingException", "Rate exceeded")
    with pytest.raises(AWSError) as err:
        keys.new_table_key(USER, "t1", CUSTOMER, ARN)
    assert err.value.code == "ThrottlingException"
    assert [op for op, _ in port.calls] == ["CreateGrant", "GenerateDataKey", "RetireGrant"]


def test_resolve_refuses_a_disabled_key() -> None:
    port, clock = FakeKeys(), Clock()
    keys = service(port, clock)
    assert keys.resolve(USER, CUSTOMER, ARN) == (ARN, CUSTOMER)
    port.state[ARN] = "Disabled"
    with pytest.raises(AWSError) as err:
        keys.resolve(USER, CUSTOMER, ARN)
    assert err.value.message.startswith(f"KMS key disabled error: com.amazonaws.services.kms.model."
                                        f"DisabledException: {ARN} is disabled.")
    with pytest.raises(AWSError) as err:
        keys.resolve(USER, CUSTOMER, "arn:aws:kms:us-east-1:111122223333:key/none")
    assert err.value.message.startswith("KMS validation error: com.amazonaws.services.kms.model.NotFoundException")


def test_owned_tables_use_the_owned_account() -> None:
    port, clock = FakeKeys(), Clock()
    keys = service(port, clock)
    ref = table(keys, OWNED)
    keys.crypto_for(USER, ref)
    assert port.calls[-1] == ("Decrypt", "dynamodb.us-east-1.amazonaws.com")
    assert "grant_id" not in ref.sse
