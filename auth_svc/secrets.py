"""Opaque tokens: generated with the `secrets` module, stored only as SHA-256 hex."""

from __future__ import annotations

import hashlib
import secrets


def refresh_token() -> str:
    """80 lowercase hex characters (40 random bytes), docs/api.md section 3.1."""
    return secrets.token_hex(40)


def one_time_token() -> str:
    """32 lowercase hex characters (16 random bytes): email verification and password reset."""
    return secrets.token_hex(16)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
