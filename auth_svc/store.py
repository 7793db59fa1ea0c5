"""The auth service's SQL, in one place. Every statement that decides a race (rotation,
one-time token use) is a single conditional UPDATE, so only one caller can win it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from contracts.outbox import Announce, announce_in, silent
from contracts.postgres import Connection, returned

REFRESH_TOKEN_TTL = timedelta(days=7)
ONE_TIME_TOKEN_TTL = timedelta(hours=1)

USER_COLUMNS = (
    "id, email, name, role, active, password_hash, email_verified_at, created_at, updated_at"
)


def _qualified(table: str) -> str:
    return ", ".join(f"{table}.{column.strip()}" for column in USER_COLUMNS.split(","))


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    name: str
    role: str
    active: bool
    password_hash: str | None  # None: made by a provider sign-in, no password set yet
    email_verified_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> User:
        return cls(**dict(row))


async def _forget_untrusted_identities(connection: Connection, user_id: uuid.UUID) -> None:
    """The account's address was proven (mail, or a trusted provider): sign-ins through
    providers not trusted with addresses, which anyone could have made, end."""
    await connection.execute(
        "DELETE FROM oauth_identities WHERE user_id = $1 AND NOT email_trusted", user_id)


async def _lock_families(connection: Connection, user_id: uuid.UUID | None) -> None:
    """The advisory locks of every live refresh-token family of `user_id`, in order."""
    if user_id is None:
        return
    families = await connection.fetch(
        "SELECT DISTINCT family_id FROM refresh_tokens WHERE user_id = $1 AND NOT revoked"
        " ORDER BY family_id", user_id)
    for family in families:
        await _lock_family(connection, family["family_id"])


async def _lock_family(connection: Connection, family_id: uuid.UUID) -> None:
    """Transaction-scoped advisory lock on one refresh-token family."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))", str(family_id))


class EmailTaken(Exception):
    pass


@dataclass(frozen=True)
class ProviderSignIn:
    """What a provider sign-in found: the account (`user`), or why there is none (`refused`:
    "unverified-taken" when the address has an account but the provider did not verify it,
    "untrusted-taken" when it has one and the provider may not link it, "unverified" when the
    provider vouches for no address at all)."""

    user: User | None = None
    created: bool = False
    refused: str | None = None


@dataclass(frozen=True)
class RotationOutcome:
    """What presenting a refresh token found: a rotated token (`user_id` set) or why not."""

    user_id: uuid.UUID | None = None
    family_id: uuid.UUID | None = None
    reused: bool = False
    expired: bool = False


class AuthStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- users -----------------------------------------------------------------------------

    async def create_user(self, email: str, password_hash: str, name: str,
                          announce: Announce = silent) -> User:
        """The new user; its announcement (user.registered) in the same transaction."""
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                row = returned(await connection.fetchrow(
                    f"INSERT INTO users (id, email, password_hash, name) VALUES ($1, $2, $3, $4)"
                    f" RETURNING {USER_COLUMNS}",
                    uuid.uuid4(), email, password_hash, name,
                ))
                await announce_in(connection, announce, row)
        except asyncpg.UniqueViolationError:
            raise EmailTaken(email) from None
        return User.from_row(row)

    async def sign_in_with_provider(
            self, provider: str, subject: str, *, email: str | None, email_verified: bool,
            name: str, trust_email: bool, announce: Announce = silent) -> ProviderSignIn:
        """docs/api.md section 16: the account of a known identity; else, for a provider
        trusted to assert email, the account of the same verified address, linked; else a
        new DEVELOPER account (announced in the same transaction), its address verified only
        when the provider is trusted with it. A trusted provider's link proves the address:
        the identities of untrusted providers go, and an account whose address was never
        verified also loses its password and sessions (account pre-hijacking)."""
        for _attempt in range(3):
            try:
                return await self._sign_in_with_provider(
                    provider, subject, email=email, email_verified=email_verified, name=name,
                    trust_email=trust_email, announce=announce)
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                continue  # a concurrent first sign-in or a token rotation: look again
        raise RuntimeError("provider sign-in kept racing")

    async def _sign_in_with_provider(
            self, provider: str, subject: str, *, email: str | None, email_verified: bool,
            name: str, trust_email: bool, announce: Announce) -> ProviderSignIn:
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                f"UPDATE oauth_identities i SET last_sign_in_at = now() FROM users u"
                f" WHERE i.provider = $1 AND i.subject = $2 AND u.id = i.user_id"
                f" RETURNING {_qualified('u')}", provider, subject)
            if row is not None:
                return ProviderSignIn(User.from_row(row))
            if email is None or not email_verified:
                taken = email is not None and await connection.fetchval(
                    "SELECT true FROM users WHERE email = $1", email)
                return ProviderSignIn(refused="unverified-taken" if taken else "unverified")
            # lock order as reset_password's: the families, then the user row (a link may
            # end every session, and must see a successor a rotation is committing)
            await _lock_families(connection, await connection.fetchval(
                "SELECT id FROM users WHERE email = $1", email))
            row = await connection.fetchrow(
                f"SELECT {USER_COLUMNS} FROM users WHERE email = $1 FOR UPDATE", email)
            created = row is None
            if row is not None:
                if not trust_email:
                    return ProviderSignIn(refused="untrusted-taken")
                if not row["active"]:
                    return ProviderSignIn(User.from_row(row))  # refused as deactivated
                row = await self._prove_address(connection, row)
            else:
                row = returned(await connection.fetchrow(
                    f"INSERT INTO users (id, email, password_hash, name, email_verified_at)"
                    f" VALUES ($1, $2, NULL, $3, CASE WHEN $4 THEN now() END)"
                    f" RETURNING {USER_COLUMNS}", uuid.uuid4(), email, name, trust_email))
                await announce_in(connection, announce, row)
            await connection.execute(
                "INSERT INTO oauth_identities (provider, subject, user_id, email, email_trusted)"
                " VALUES ($1, $2, $3, $4, $5)", provider, subject, row["id"], email,
                trust_email)
            return ProviderSignIn(User.from_row(row), created=created)

    async def _prove_address(self, connection: Connection,
                             row: asyncpg.Record) -> asyncpg.Record:
        """A trusted provider vouched for `row`'s address: identities of untrusted providers
        go; if the address was never verified, the password and every session go too."""
        await _forget_untrusted_identities(connection, row["id"])
        if row["email_verified_at"] is not None:
            return row
        await connection.execute(
            "UPDATE refresh_tokens SET revoked = true WHERE user_id = $1 AND NOT revoked",
            row["id"])
        return returned(await connection.fetchrow(
            f"UPDATE users SET password_hash = NULL, email_verified_at = now(),"
            f" updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}", row["id"]))

    async def user_by_email(self, email: str) -> User | None:
        row = await self._pool.fetchrow(
            f"SELECT {USER_COLUMNS} FROM users WHERE email = $1", email)
        return User.from_row(row) if row else None

    async def user_by_id(self, user_id: uuid.UUID) -> User | None:
        row = await self._pool.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
        return User.from_row(row) if row else None

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self._pool.execute(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
            user_id, password_hash)

    async def set_role(self, email: str, role: str) -> bool:
        status = await self._pool.execute(
            "UPDATE users SET role = $2, updated_at = now() WHERE email = $1", email, role)
        return status.endswith(" 1")

    async def set_active(self, email: str, active: bool) -> bool:
        status = await self._pool.execute(
            "UPDATE users SET active = $2, updated_at = now() WHERE email = $1", email, active)
        return status.endswith(" 1")

    # --- one-time tokens (email verification, password reset) ------------------------------

    async def set_verification_token(self, user_id: uuid.UUID, token_hash: str) -> None:
        await self._pool.execute(
            "UPDATE users SET verification_token_hash = $2,"
            " verification_token_expires_at = now() + $3 WHERE id = $1",
            user_id, token_hash, ONE_TIME_TOKEN_TTL)

    async def verify_email(self, token_hash: str) -> str:
        """'verified', or why not: 'invalid', 'already_verified', 'expired'."""
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT id, email_verified_at, verification_token_expires_at < now() AS expired"
                " FROM users WHERE verification_token_hash = $1 FOR UPDATE", token_hash)
            if row is None:
                return "invalid"
            if row["email_verified_at"] is not None:
                return "already_verified"
            if row["expired"]:
                return "expired"
            await connection.execute(
                "UPDATE users SET email_verified_at = now(), verification_token_hash = NULL,"
                " verification_token_expires_at = NULL, updated_at = now() WHERE id = $1",
                row["id"])
            await _forget_untrusted_identities(connection, row["id"])
            return "verified"

    async def set_reset_token(self, user_id: uuid.UUID, token_hash: str) -> None:
        await self._pool.execute(
            "UPDATE users SET reset_token_hash = $2, reset_token_expires_at = now() + $3"
            " WHERE id = $1", user_id, token_hash, ONE_TIME_TOKEN_TTL)

    async def reset_token_state(self, token_hash: str) -> str:
        """'valid', 'invalid' or 'expired', without changing anything (checked before the
        costly hashing of the new password)."""
        expired = await self._pool.fetchval(
            "SELECT reset_token_expires_at < now() FROM users WHERE reset_token_hash = $1",
            token_hash)
        if expired is None:
            return "invalid"
        return "expired" if expired else "valid"

    async def reset_password(self, token_hash: str, password_hash: str) -> str:
        """'reset' (and every refresh token of the user revoked), 'invalid' or 'expired'."""
        async with self._pool.acquire() as connection, connection.transaction():
            # Lock order as a rotation's: the families first, then the user row. A rotation
            # in flight holds its family's lock until its successor is committed, so the
            # revocation below sees that successor, and neither can wait for the other
            # (taking the user row first deadlocked with the rotation's insert).
            await _lock_families(connection, await connection.fetchval(
                "SELECT id FROM users WHERE reset_token_hash = $1", token_hash))
            row = await connection.fetchrow(
                "SELECT id, reset_token_expires_at < now() AS expired FROM users"
                " WHERE reset_token_hash = $1 FOR UPDATE", token_hash)
            if row is None:
                return "invalid"
            if row["expired"]:
                return "expired"
            # the reset link proves the mailbox: the address is verified, and sign-ins through
            # providers not trusted with it end (docs/api.md section 16)
            await connection.execute(
                "UPDATE users SET password_hash = $2, reset_token_hash = NULL,"
                " reset_token_expires_at = NULL, updated_at = now(),"
                " email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1",
                row["id"], password_hash)
            await _forget_untrusted_identities(connection, row["id"])
            await connection.execute(
                "UPDATE refresh_tokens SET revoked = true WHERE user_id = $1 AND NOT revoked",
                row["id"])
            return "reset"

    # --- refresh tokens --------------------------------------------------------------------

    async def add_refresh_token(
        self, user_id: uuid.UUID, token_hash: str, family_id: uuid.UUID | None = None,
        token_id: uuid.UUID | None = None,
    ) -> None:
        await self._pool.execute(
            "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, expires_at)"
            " VALUES ($1, $2, $3, $4, now() + $5)",
            token_id or uuid.uuid4(), token_hash, user_id, family_id or uuid.uuid4(),
            REFRESH_TOKEN_TTL)

    async def rotate_refresh_token(
        self, token_hash: str, new_token_hash: str
    ) -> RotationOutcome:
        """Revoke the presented token and store its successor in one transaction.

        The conditional UPDATE is the whole race: of concurrent presenters exactly one sees
        its row. Presenting a token that was already rotated revokes its entire family.
        Rotations and revocations of one family hold its advisory lock, so a revocation can
        never miss a successor that a concurrent rotation is about to commit.
        """
        new_id = uuid.uuid4()
        async with self._pool.acquire() as connection, connection.transaction():
            family = await connection.fetchval(
                "SELECT family_id FROM refresh_tokens WHERE token_hash = $1", token_hash)
            if family is None:
                return RotationOutcome()
            await _lock_family(connection, family)
            row = await connection.fetchrow(
                "UPDATE refresh_tokens SET revoked = true, replaced_by = $2"
                " WHERE token_hash = $1 AND NOT revoked AND expires_at > now()"
                " RETURNING user_id, family_id", token_hash, new_id)
            if row is not None:
                await connection.execute(
                    "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, expires_at)"
                    " VALUES ($1, $2, $3, $4, now() + $5)",
                    new_id, new_token_hash, row["user_id"], row["family_id"], REFRESH_TOKEN_TTL)
                return RotationOutcome(user_id=row["user_id"], family_id=row["family_id"])
            known = returned(await connection.fetchrow(
                "SELECT revoked, replaced_by IS NOT NULL AS rotated,"
                " expires_at <= now() AS expired FROM refresh_tokens WHERE token_hash = $1",
                token_hash))
            if known["rotated"]:
                await self._revoke_family(connection, family)
                return RotationOutcome(reused=True)
        return RotationOutcome(expired=bool(known["expired"] and not known["revoked"]))

    async def revoke_family(self, family_id: uuid.UUID) -> int:
        async with self._pool.acquire() as connection, connection.transaction():
            await _lock_family(connection, family_id)
            return await self._revoke_family(connection, family_id)

    @staticmethod
    async def _revoke_family(connection: Connection, family_id: uuid.UUID) -> int:
        status = await connection.execute(
            "UPDATE refresh_tokens SET revoked = true WHERE family_id = $1 AND NOT revoked",
            family_id)
        return int(status.split()[-1])

    async def revoke_refresh_token(self, token_hash: str, user_id: uuid.UUID) -> None:
        """Log out: revoke the caller's token. A token that was already rotated is reuse (it
        may have been stolen and refreshed by someone else): its whole family is revoked."""
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT family_id, replaced_by IS NOT NULL AS rotated FROM refresh_tokens"
                " WHERE token_hash = $1 AND user_id = $2", token_hash, user_id)
            if row is None:
                return
            await _lock_family(connection, row["family_id"])
            if row["rotated"]:
                await self._revoke_family(connection, row["family_id"])
            else:
                await connection.execute(
                    "UPDATE refresh_tokens SET revoked = true WHERE token_hash = $1"
                    " AND NOT revoked", token_hash)
