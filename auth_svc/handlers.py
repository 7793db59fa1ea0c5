"""The auth service's RPC operations (docs/api.md section 3). The gateway has validated and
normalised every body and query against the route table's schemas; each handler receives them
decoded into its operation's types (`contracts.operations`) and returns the declared answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from auth_svc import secrets
from auth_svc.mail import Mailer
from auth_svc.passwords import Passwords
from auth_svc.sessions import Sessions, registration_announcer
from auth_svc.store import AuthStore, EmailTaken, User
from auth_svc.throttle import LoginThrottle
from contracts import operations as op
from contracts.errors import BadRequest, Conflict, Forbidden, Unauthorized
from contracts.logging import get_logger
from contracts.operations import Call
from contracts.outbox import OutboxRelay
from contracts.rpc import handles
from contracts.schemas import auth
from contracts.schemas.common import Message
from contracts.settings import Settings

log = get_logger(__name__)

INVALID_LOGIN = "Invalid email or password"
INVALID_REFRESH = "Invalid or revoked refresh token"


class AuthHandlers:
    def __init__(
        self, settings: Settings, store: AuthStore, passwords: Passwords,
        throttle: LoginThrottle, mailer: Mailer, relay: OutboxRelay | None = None,
    ) -> None:
        self._settings = settings
        self._registered = registration_announcer(relay)
        self._sessions = Sessions(settings.access_token_secret, store)
        self._store = store
        self._passwords = passwords
        self._throttle = throttle
        self._mailer = mailer
        self._background: set[asyncio.Task[None]] = set()

    async def drain(self, grace_s: float) -> None:
        """Let work started after a reply (mail lookups) finish before shutdown."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=grace_s)

    # --- operations --------------------------------------------------------------------------

    @handles(op.AUTH_REGISTER)
    async def register(self, call: Call[auth.RegisterBody, None, None]) -> auth.Registered:
        body = call.body
        password_hash = await self._passwords.hash(body.password)
        try:
            user = await self._store.create_user(body.email, password_hash, body.name,
                                                 self._registered)
        except EmailTaken:
            raise Conflict("Email already registered") from None
        message = "Registration successful"
        if self._mailer.configured:
            message = "Registration successful. Verification email sent."
            self._after_reply(self._mail_verification(user))
        return auth.Registered.view(await self._sessions.open(user), message=message,
                                    user=auth.User.view(user))

    @handles(op.AUTH_LOGIN)
    async def login(self, call: Call[auth.LoginBody, None, None]) -> auth.Session:
        email, password, client_ip = call.body.email, call.body.password, call.client_ip
        await self._throttle.admit(email, client_ip)  # counted as a failure until it succeeds
        user = await self._store.user_by_email(email)
        # Unknown email: verified against a dummy hash, so it costs what a wrong password costs.
        if not await self._passwords.verify(user.password_hash if user else None,
                                            password) or user is None:
            raise Unauthorized(INVALID_LOGIN)
        await self._throttle.succeeded(email, client_ip)
        if not user.active:
            raise Forbidden("Account is deactivated")
        if user.password_hash is not None and self._passwords.needs_rehash(user.password_hash):
            await self._store.set_password_hash(user.id, await self._passwords.hash(password))
        return auth.Session.view(await self._sessions.open(user), user=auth.User.view(user))

    @handles(op.AUTH_REFRESH)
    async def refresh(self, call: Call[auth.RefreshBody, None, None]) -> auth.TokenPair:
        presented = secrets.digest(call.body.refresh_token)
        successor = secrets.refresh_token()
        outcome = await self._store.rotate_refresh_token(presented, secrets.digest(successor))
        if outcome.user_id is None:
            if outcome.reused:
                log.warning("refresh token reused; its family is revoked")
            raise Unauthorized("Refresh token expired" if outcome.expired else INVALID_REFRESH)
        user = await self._store.user_by_id(outcome.user_id)
        if user is None or not user.active:
            assert outcome.family_id is not None
            await self._store.revoke_family(outcome.family_id)
            raise Forbidden("Account not found or deactivated")
        return auth.TokenPair(access_token=self._sessions.access_token(user),
                              refresh_token=successor)

    @handles(op.AUTH_LOGOUT)
    async def logout(self, call: Call[auth.RefreshBody, None, None]) -> Message:
        await self._store.revoke_refresh_token(
            secrets.digest(call.body.refresh_token), uuid.UUID(call.authenticated.user_id))
        return Message(message="Logged out successfully")

    @handles(op.AUTH_PROFILE)
    async def profile(self, call: Call[None, None, None]) -> auth.Profile:
        user = await self._store.user_by_id(uuid.UUID(call.authenticated.user_id))
        if user is None:
            raise BadRequest("User not found")
        return auth.Profile.view(user)

    @handles(op.AUTH_SEND_VERIFICATION_EMAIL)
    async def send_verification_email(self, call: Call[auth.EmailBody, None, None]) -> Message:
        # The lookup happens after the reply: same answer and same timing for any address.
        self._after_reply(self._verification_if_unverified(call.body.email))
        return Message(message="If email exists, verification email sent")

    @handles(op.AUTH_VERIFY_EMAIL)
    async def verify_email(self, call: Call[None, auth.TokenQuery, None]) -> Message:
        outcome = await self._store.verify_email(secrets.digest(call.query.token))
        if outcome == "invalid":
            raise BadRequest("Invalid verification token")
        if outcome == "already_verified":
            raise BadRequest("Email already verified")
        if outcome == "expired":
            raise BadRequest("Verification token expired or invalid")
        return Message(message="Email verified successfully")

    @handles(op.AUTH_FORGOT_PASSWORD)
    async def forgot_password(self, call: Call[auth.EmailBody, None, None]) -> Message:
        self._after_reply(self._mail_reset(call.body.email))
        return Message(message="If email exists, reset link has been sent")

    @handles(op.AUTH_RESET_PASSWORD)
    async def reset_password(self, call: Call[auth.ResetPasswordBody, None, None]) -> Message:
        token_hash = secrets.digest(call.body.token)
        # the token first: a wrong one must not cost an argon2 hash (CPU on demand for free)
        outcome = await self._store.reset_token_state(token_hash)
        if outcome == "valid":
            password_hash = await self._passwords.hash(call.body.new_password)
            outcome = await self._store.reset_password(token_hash, password_hash)
        if outcome == "invalid":
            raise BadRequest("Invalid reset token")
        if outcome == "expired":
            raise BadRequest("Reset token expired or invalid")
        return Message(message="Password reset successfully")

    # --- helpers -----------------------------------------------------------------------------

    def _after_reply(self, work: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            await asyncio.sleep(0)  # let the reply go out first
            try:
                await work
            except Exception:
                log.exception("background auth work failed")

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _verification_if_unverified(self, email: str) -> None:
        user = await self._store.user_by_email(email)
        if user is not None and user.email_verified_at is None:
            await self._mail_verification(user)

    async def _mail_verification(self, user: User) -> None:
        await self._mail_one_time_link(
            user, self._store.set_verification_token, "verify-email",
            "Verify your email address",
            lambda link, _token: (
                f"Hello {user.name},\n\nconfirm your email address by opening this link "
                f"within one hour:\n\n{link}\n\nIf you did not register, ignore this "
                "message.\n"))

    async def _mail_reset(self, email: str) -> None:
        user = await self._store.user_by_email(email)
        if user is None or not user.active:
            return
        endpoint = f"{self._settings.app_url}/api/v1/auth/reset-password"
        await self._mail_one_time_link(
            user, self._store.set_reset_token, "reset-password", "Reset your password",
            lambda link, token: (
                f"Hello {user.name},\n\nsomeone asked to reset the password of this account. "
                f"Within one hour, send the token below with your new password to\n"
                f"POST {endpoint} "
                f'({{"token": "{token}", "newPassword": "..."}}):\n\n{link}\n\n'
                f"Token: {token}\n\nIf this was not you, ignore this message.\n"))

    async def _mail_one_time_link(
        self, user: User, store: Callable[[uuid.UUID, str], Awaitable[None]], endpoint: str,
        subject: str, text: Callable[[str, str], str],
    ) -> None:
        """Issue a one-time token (stored hashed) and mail its link to the user."""
        if not self._mailer.configured:
            return
        token = secrets.one_time_token()
        await store(user.id, secrets.digest(token))
        link = f"{self._settings.app_url}/api/v1/auth/{endpoint}?token={token}"
        self._mailer.send_later(user.email, subject, text(link, token))
