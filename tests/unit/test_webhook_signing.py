"""project_svc.webhook_signing: signatures that the `standardwebhooks` package's own verifier
accepts (one secret, two during a rotation), and secrets sealed at rest that open only under
their key and for their webhook."""

from __future__ import annotations

import base64
import os
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from contracts.settings import encryption_key
from project_svc.webhook_signing import SecretBox, SecretUnreadable, new_secret, signed_headers

BODY = b'{"type":"project.updated","timestamp":"2026-12-03T17:00:00.000Z","data":{"id":"p1"}}'


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_the_reference_verifier_accepts_our_signature() -> None:
    secret = new_secret()
    headers = signed_headers("msg_2Lh", int(time.time()), BODY, [secret])
    assert Webhook(secret).verify(BODY, headers) == {
        "type": "project.updated", "timestamp": "2026-12-03T17:00:00.000Z",
        "data": {"id": "p1"}}


def test_a_changed_body_or_another_secret_is_refused() -> None:
    secret = new_secret()
    headers = signed_headers("msg_2Lh", int(time.time()), BODY, [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"p1", b"p2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_during_a_rotation_both_secrets_verify() -> None:
    old, new = new_secret(), new_secret()
    headers = signed_headers("msg_2Lh", int(time.time()), BODY, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)


def key() -> bytes:
    return encryption_key(base64.b64encode(os.urandom(32)).decode())


def test_a_sealed_secret_opens_for_its_webhook_only() -> None:
    box, secret = SecretBox(key()), new_secret()
    sealed = box.seal(secret, "webhook-1")
    assert secret not in sealed and sealed.startswith("v1.")
    assert box.open(sealed, "webhook-1") == secret
    with pytest.raises(SecretUnreadable):
        box.open(sealed, "webhook-2")


def test_after_a_key_rotation_old_secrets_still_open_and_new_ones_use_the_new_key() -> None:
    old_key, new_key = key(), key()
    sealed_before = SecretBox(old_key).seal("whsec_x", "w")
    rotated = SecretBox(new_key, old=[old_key])
    assert rotated.open(sealed_before, "w") == "whsec_x"
    assert not rotated.is_current(sealed_before)
    assert rotated.is_current(rotated.seal("whsec_x", "w"))
    with pytest.raises(SecretUnreadable):  # the old key removed too early
        SecretBox(new_key).open(sealed_before, "w")


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_an_encryption_key_must_be_32_bytes_of_base64(text: str) -> None:
    with pytest.raises(ValueError):
        encryption_key(text)
