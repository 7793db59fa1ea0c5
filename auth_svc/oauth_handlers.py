"""Sign-in with providers (docs/api.md section 16): the four operations of `/api/v1/oauth`.

    initiate   a pending sign-in (state, PKCE verifier, nonce) in Redis; the provider's
               authorization URL, or a 302 to it with `?redirect=1`
    callback   the state taken (once, for its provider); the code exchanged with the
               verifier; who signed in (an ID token checked, or GitHub's API); the account
               found, linked or made (AuthStore.sign_in_with_provider); then a 302 to
               OAUTH_SUCCESS_URL with a one-time code in the fragment
    exchange   that code, once, within 60 s: the session's tokens (never in a URL)

Every failure is a 4xx in the error envelope (a provider that cannot be reached: 502).
"""

from __future__ import annotations

import asyncio
import re
import uuid

from auth_svc.oauth_providers import (
    Identity,
    ProviderRefused,
    ProviderUnavailable,
    SignInProvider,
)
from auth_svc.oauth_state import PendingSignIn, SignInStates, code_challenge, random_value
from auth_svc.sessions import Sessions
from auth_svc.store import AuthStore, ProviderSignIn, User
from contracts import operations as op
from contracts.errors import BadRequest, Conflict, Forbidden, NotFound
from contracts.logging import get_logger
from contracts.operations import Call, Redirect
from contracts.outbox import Announce
from contracts.rpc import handles
from contracts.schemas import auth, oauth

log = get_logger(__name__)

ERROR_CODE = re.compile(r"[a-z_]{1,64}")
IDENTIFY_WITHIN_S = 4.0
INVALID_STATE = "Invalid, used or expired state"
INVALID_CODE = "Invalid, used or expired code"
REFUSALS = {
    "unverified-taken": (Conflict, "An account with this email address exists, and the "
                                   "provider did not verify the address"),
    "untrusted-taken": (Conflict, "An account with this email address exists; this provider "
                                  "may not sign in to it"),
    "unverified": (BadRequest, "The provider did not verify an email address for this "
                               "account"),
}


def account_name(identity: Identity) -> str:
    """A name for a new account (2 to 100 characters, as registration asks)."""
    name = (identity.name or "").strip() or (identity.email or "").split("@")[0]
    return name[:100] if len(name) >= 2 else f"{name or 'user'}-{identity.subject[:8]}"[:100]


class OAuthHandlers:
    def __init__(self, providers: dict[str, SignInProvider], states: SignInStates,
                 store: AuthStore, sessions: Sessions, *, app_url: str, success_url: str,
                 announce_registration: Announce) -> None:
        self._providers = providers
        self._states = states
        self._store = store
        self._sessions = sessions
        self._app_url = app_url.rstrip("/")
        self._success_url = success_url
        self._announce_registration = announce_registration

    def _provider(self, name: str) -> SignInProvider:
        provider = self._providers.get(name)
        if provider is None:
            raise NotFound("Unknown OAuth provider")
        return provider

    def _redirect_uri(self, name: str) -> str:
        return f"{self._app_url}/api/v1/oauth/{name}/callback"

    @handles(op.OAUTH_PROVIDERS)
    async def providers(self, call: Call[None, None, None]) -> list[oauth.Provider]:
        return [oauth.Provider(name=name, display_name=provider.settings.display_name)
                for name, provider in self._providers.items()]

    @handles(op.OAUTH_INITIATE)
    async def initiate(self, call: Call[None, oauth.InitiateQuery, oauth.ProviderParams]
                       ) -> oauth.Authorization | Redirect:
        name = call.params.provider
        provider = self._provider(name)
        verifier, nonce = random_value(), random_value()
        redirect_uri = self._redirect_uri(name)
        state = await self._states.begin(PendingSignIn(name, verifier, nonce, redirect_uri))
        url = await provider.authorization_url(
            state=state, code_challenge=code_challenge(verifier), nonce=nonce,
            redirect_uri=redirect_uri)
        if call.query.redirect:
            return Redirect(url)
        return oauth.Authorization(authorization_url=url, state=state)

    @handles(op.OAUTH_CALLBACK)
    async def callback(self, call: Call[None, oauth.CallbackQuery, oauth.ProviderParams]
                       ) -> Redirect:
        name, query = call.params.provider, call.query
        provider = self._provider(name)
        state = query.state if oauth.CallbackQuery.given(query.state) else None
        pending = await self._states.take(state) if state else None  # used up either way
        if pending is None or pending.provider != name:
            raise BadRequest(INVALID_STATE)
        if oauth.CallbackQuery.given(query.error):
            # echoed only when it is an OAuth error code (RFC 6749 section 4.1.2.1's form)
            raise ProviderRefused(query.error if ERROR_CODE.fullmatch(query.error)
                                  else "invalid_error")
        if oauth.CallbackQuery.given(query.iss) and provider.issuer is not None \
                and query.iss != provider.issuer:
            raise BadRequest("The callback names another issuer")  # RFC 9207 mix-up defence
        if not oauth.CallbackQuery.given(query.code):
            raise BadRequest("The callback has no code")
        try:
            # within the gateway's RPC deadline, so the person sees why it failed
            async with asyncio.timeout(IDENTIFY_WITHIN_S):
                identity = await provider.identify(code=query.code, verifier=pending.verifier,
                                                   nonce=pending.nonce,
                                                   redirect_uri=pending.redirect_uri)
        except TimeoutError:
            raise ProviderUnavailable("it did not answer in time") from None
        outcome = await self._store.sign_in_with_provider(
            name, identity.subject, email=identity.email,
            email_verified=identity.email_verified, name=account_name(identity),
            trust_email=provider.settings.trust_email,
            announce=self._announce_registration)
        user = self._account_of(outcome)
        log.info("signed in with a provider", provider=name, user_id=str(user.id),
                 created=outcome.created)
        code = await self._states.finish(str(user.id))
        return Redirect(f"{self._success_url}#code={code}")

    @handles(op.OAUTH_EXCHANGE)
    async def exchange(self, call: Call[oauth.ExchangeBody, None, None]) -> auth.Session:
        user_id = await self._states.exchange(call.body.code)
        user = await self._store.user_by_id(uuid.UUID(user_id)) if user_id else None
        if user is None:
            raise BadRequest(INVALID_CODE)
        if not user.active:
            raise Forbidden("Account is deactivated")
        return auth.Session.view(await self._sessions.open(user), user=auth.User.view(user))

    @staticmethod
    def _account_of(outcome: ProviderSignIn) -> User:
        if outcome.refused is not None:
            error, message = REFUSALS[outcome.refused]
            raise error(message)
        assert outcome.user is not None
        if not outcome.user.active:
            raise Forbidden("Account is deactivated")
        return outcome.user
