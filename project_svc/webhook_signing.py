"""Webhook secrets and signatures per the Standard Webhooks specification (standardwebhooks.com),
and the secrets' encryption at rest.

Signing: a delivery carries three headers,
  webhook-id         the delivery's id: stable across attempts, the receiver's idempotency key
  webhook-timestamp  Unix seconds of this attempt
  webhook-signature  `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, one per active
                     secret, space-separated (during a rotation's overlap: the new one and the old)
where a secret is `whsec_` + base64 of its 32-byte key, and the key is what is hashed with.

At rest a secret is sealed with AES-256-GCM under `WEBHOOK_ENCRYPTION_KEY` (base64 of 32
bytes): `v1.<key id>.<base64 of nonce + ciphertext + tag>`, the key id being the first 8 hex
digits of the key's SHA-256, and the webhook's id bound in as associated data (a sealed secret
copied onto another webhook's row does not open). Rotating the encryption key: set the new
key as WEBHOOK_ENCRYPTION_KEY and the old one in WEBHOOK_ENCRYPTION_OLD_KEYS (comma-
separated); secrets sealed under an old key still open, and a webhook's secrets are sealed
under the new key when its secret is rotated (`POST /webhooks/:id/rotate-secret`) or when
an operator runs `python -m project_svc reseal-webhook-secrets` (project_svc.reseal), after
which the old key can go.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts.settings import Settings, encryption_key

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
SEALED_VERSION = "v1"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature_header(delivery_id: str, timestamp_s: int, body: bytes,
                     secrets: Iterable[str]) -> str:
    """`webhook-signature`: one `v1,<base64>` per secret, space-separated."""
    signed = b"%s.%d.%s" % (delivery_id.encode(), timestamp_s, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest())
        .decode() for secret in secrets)


def signed_headers(delivery_id: str, timestamp_s: int, body: bytes,
                   secrets: Iterable[str]) -> dict[str, str]:
    return {"webhook-id": delivery_id, "webhook-timestamp": str(timestamp_s),
            "webhook-signature": signature_header(delivery_id, timestamp_s, body, secrets),
            "content-type": "application/json"}


class SecretUnreadable(Exception):
    """A sealed secret that no configured key opens (a key removed too early, or tampering)."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class SecretBox:
    """Seals webhook secrets under the current key; opens them under it or an old one."""

    def __init__(self, current: bytes, old: Iterable[bytes] = ()) -> None:
        self._current_id = key_id(current)
        self._current = AESGCM(current)
        self._keys = {key_id(key): AESGCM(key) for key in (*old, current)}

    def seal(self, secret: str, webhook_id: str) -> str:
        nonce = os.urandom(12)
        sealed = self._current.encrypt(nonce, secret.encode(), webhook_id.encode())
        return f"{SEALED_VERSION}.{self._current_id}.{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, webhook_id: str) -> str:
        try:
            version, kid, blob = sealed.split(".", 2)
            aead = self._keys[kid] if version == SEALED_VERSION else None
            raw = base64.b64decode(blob, validate=True)
        except (ValueError, KeyError, binascii.Error):
            raise SecretUnreadable("sealed under an unknown key or malformed") from None
        if aead is None:
            raise SecretUnreadable(f"unknown sealing version {version!r}")
        try:
            return aead.decrypt(raw[:12], raw[12:], webhook_id.encode()).decode()
        except InvalidTag:
            raise SecretUnreadable("does not open under its key") from None

    def is_current(self, sealed: str) -> bool:
        """Whether `sealed` is under the current key (else it is sealed again when written)."""
        return sealed.startswith(f"{SEALED_VERSION}.{self._current_id}.")


def secret_box(settings: Settings) -> SecretBox:
    """The box of WEBHOOK_ENCRYPTION_KEY, opening what WEBHOOK_ENCRYPTION_OLD_KEYS sealed."""
    return SecretBox(encryption_key(settings.webhook_encryption_key),
                     [encryption_key(key) for key in settings.webhook_encryption_old_keys])
