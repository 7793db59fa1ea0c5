"""The auth service's RPC operations (docs/api.md section 3). The gateway has validated and
normalised every body and query against the route table's schemas before they arrive here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from auth_svc import secrets
from auth_svc.mail import Mailer
from auth_svc.passwords import Passwords
from auth_svc.store import AuthStore, EmailTaken, User
from auth_svc.throttle import LoginThrottle
from contracts.errors import BadRequest, Conflict, Forbidden, Unauthorized
from contracts.identity import issue_access_token
from contracts.logging import get_logger
from contracts.messages import RpcRequest
from contracts.rpc import Reply, operation
from contracts.settings import Settings

log = get_logger(__name__)

INVALID_LOGIN = "Invalid email or password"
INVALID_REFRESH = "Invalid or revoked refresh token"


class AuthHandlers:
    def __init__(
        self, settings: Settings, store: AuthStore, passwords: Passwords,
        throttle: LoginThrottle, mailer: Mailer,
    ) -> None:
        self._settings = settings
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

    @operation("auth.register")
    async def register(self, request: RpcRequest) -> Reply:
        body = request.body
        password_hash = await self._passwords.hash(body["password"])
        try:
            user = await self._store.create_user(body["email"], password_hash, body["name"])
        except EmailTaken:
            raise Conflict("Email already registered") from None
        message = "Registration successful"
        if self._mailer.configured:
            message = "Registration successful. Verification email sent."
            self._after_reply(self._mail_verification(user))
        return Reply({"message": message, "user": user.public(),
                      **await self._new_session(user)}, status=201)

    @operation("auth.login")
    async def login(self, request: RpcRequest) -> dict[str, Any]:
        body, client_ip = request.body, request.client_ip
        email = body["email"]
        await self._throttle.admit(email, client_ip)  # counted as a failure until it succeeds
        user = await self._store.user_by_email(email)
        # Unknown email: verified against a dummy hash, so it costs what a wrong password costs.
        if not await self._passwords.verify(user.password_hash if user else None,
                                            body["password"]) or user is None:
            raise Unauthorized(INVALID_LOGIN)
        await self._throttle.succeeded(email, client_ip)
        if not user.active:
            raise Forbidden("Account is deactivated")
        if self._passwords.needs_rehash(user.password_hash):
            await self._store.set_password_hash(user.id, await self._passwords.hash(
                body["password"]))
        return {"user": user.public(), **await self._new_session(user)}

    @operation("auth.refresh")
    async def refresh(self, request: RpcRequest) -> dict[str, Any]:
        presented = secrets.digest(request.body["refreshToken"])
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
        return {"accessToken": self._access_token(user), "refreshToken": successor}

    @operation("auth.logout")
    async def logout(self, request: RpcRequest) -> dict[str, str]:
        await self._store.revoke_refresh_token(
            secrets.digest(request.body["refreshToken"]),
            uuid.UUID(request.authenticated.user_id))
        return {"message": "Logged out successfully"}

    @operation("auth.profile")
    async def profile(self, request: RpcRequest) -> dict[str, Any]:
        user = await self._store.user_by_id(uuid.UUID(request.authenticated.user_id))
        if user is None:
            raise BadRequest("User not found")
        return user.profile()

    @operation("auth.send_verification_email")
    async def send_verification_email(self, request: RpcRequest) -> dict[str, str]:
        # The lookup happens after the reply: same answer and same timing for any address.
        self._after_reply(self._verification_if_unverified(request.body["email"]))
        return {"message": "If email exists, verification email sent"}

    @operation("auth.verify_email")
    async def verify_email(self, request: RpcRequest) -> dict[str, str]:
        outcome = await self._store.verify_email(secrets.digest(request.query["token"]))
        if outcome == "invalid":
            raise BadRequest("Invalid verification token")
        if outcome == "already_verified":
            raise BadRequest("Email already verified")
        if outcome == "expired":
            raise BadRequest("Verification token expired or invalid")
        return {"message": "Email verified successfully"}

    @operation("auth.forgot_password")
    async def forgot_password(self, request: RpcRequest) -> dict[str, str]:
        self._after_reply(self._mail_reset(request.body["email"]))
        return {"message": "If email exists, reset link has been sent"}

    @operation("auth.reset_password")
    async def reset_password(self, request: RpcRequest) -> dict[str, str]:
        body = request.body
        token_hash = secrets.digest(body["token"])
        # the token first: a wrong one must not cost an argon2 hash (CPU on demand for free)
        outcome = await self._store.reset_token_state(token_hash)
        if outcome == "valid":
            password_hash = await self._passwords.hash(body["newPassword"])
            outcome = await self._store.reset_password(token_hash, password_hash)
        if outcome == "invalid":
            raise BadRequest("Invalid reset token")
        if outcome == "expired":
            raise BadRequest("Reset token expired or invalid")
        return {"message": "Password reset successfully"}

    # --- helpers -----------------------------------------------------------------------------

    def _access_token(self, user: User) -> str:
        return issue_access_token(self._settings.access_token_secret, user_id=str(user.id),
                                  email=user.email, role=user.role)

    async def _new_session(self, user: User) -> dict[str, str]:
        """A token pair opening a new refresh token family (one per login)."""
        refresh_token = secrets.refresh_token()
        await self._store.add_refresh_token(user.id, secrets.digest(refresh_token))
        return {"accessToken": self._access_token(user), "refreshToken": refresh_token}

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
