"""What signing in gives, however it happened (password or provider): an access token and a
refresh token opening a new family; and the `user.registered` announcement of a new account
(webhooks: admins' only), written with the account (contracts/outbox.py)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from auth_svc import secrets
from auth_svc.store import AuthStore, User
from contracts.identity import issue_access_token
from contracts.messages import Event
from contracts.outbox import Announce, OutboxRelay, domain_event
from contracts.schemas import auth


class Sessions:
    def __init__(self, access_token_secret: str, store: AuthStore) -> None:
        self._secret = access_token_secret
        self._store = store

    def access_token(self, user: User) -> str:
        return issue_access_token(self._secret, user_id=str(user.id), email=user.email,
                                  role=user.role)

    async def open(self, user: User) -> auth.TokenPair:
        """A token pair opening a new refresh token family (one per sign-in)."""
        refresh_token = secrets.refresh_token()
        await self._store.add_refresh_token(user.id, secrets.digest(refresh_token))
        return auth.TokenPair(access_token=self.access_token(user), refresh_token=refresh_token)


def registration_announcer(relay: OutboxRelay | None) -> Announce:
    """user.registered with the profile the API answers; the relay looks at once."""

    def announce(row: asyncpg.Record) -> Sequence[Event]:
        if relay is not None:
            relay.nudge()
        return [domain_event("user.registered", auth.User.view(User.from_row(row)))]

    return announce
