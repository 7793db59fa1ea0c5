"""Sign-in with OpenID Connect and OAuth 2.0 providers (docs/api.md section 16)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import MISSING, BeforeValidator

from contracts.schemas.common import Answer
from contracts.validation import RequestModel, checks, length

# any text: a name that is no configured provider's is a 404 (auth_svc.oauth_handlers)
ProviderName = Annotated[str, checks(length("provider", min=1, max=100))]
# what a provider sends back: opaque, bounded
_Opaque = Annotated[str, checks(length("value", max=2048))]


def _flag(value: Any) -> Any:
    """`?redirect=1` (or true), `0` (or false)."""
    if isinstance(value, bool):
        return value
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    return value  # refused as not a boolean


class ProviderParams(RequestModel):
    provider: ProviderName


class InitiateQuery(RequestModel):
    redirect: Annotated[bool, BeforeValidator(_flag)] = False


class CallbackQuery(RequestModel):
    """What the provider appends to the redirect URI: `code` and `state`, or `error` (RFC 6749
    section 4.1.2.1), and `iss` (RFC 9207) when it sends one. Each may be missing: the
    service says which one is wrong."""

    code: _Opaque | MISSING = MISSING
    state: _Opaque | MISSING = MISSING
    error: _Opaque | MISSING = MISSING
    error_description: _Opaque | MISSING = MISSING
    iss: _Opaque | MISSING = MISSING


class ExchangeBody(RequestModel):
    code: Annotated[str, checks(length("Code", min=1, max=200, too_short="Code is required"))]


class Provider(Answer):
    name: str
    display_name: str


class Authorization(Answer):
    """Where to send the person's browser, and the state it will come back with."""

    authorization_url: str
    state: str
