"""The auth service's storage against the real PostgreSQL and its login throttle against the
real Redis: migrations, refresh-token rotation races and reuse detection, one-time tokens."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from redis.asyncio import Redis

from auth_svc import secrets
from auth_svc.app import MIGRATIONS, open_database
from auth_svc.store import AuthStore
from auth_svc.throttle import LoginThrottle
from contracts.errors import TooManyRequests
from contracts.migrations import migrate


@pytest.fixture
async def pool(auth_database_url, settings):
    pool = await open_database(settings)
    yield pool
    await pool.close()


@pytest.fixture
def store(pool) -> AuthStore:
    return AuthStore(pool)


async def new_user(store: AuthStore) -> uuid.UUID:
    user = await store.create_user(f"{uuid.uuid4().hex}@example.com", "hash", "Test User")
    return user.id


async def test_migrations_apply_once(pool):
    async with pool.acquire() as connection:
        assert await migrate(connection, MIGRATIONS) == []  # open_database applied them
        versions = await connection.fetch("SELECT version FROM schema_migrations")
    assert [r["version"] for r in versions] == [version for version, _ in MIGRATIONS]


async def test_concurrent_migrators_wait_for_each_other(settings):
    pools = await asyncio.gather(*(open_database(settings) for _ in range(3)))
    for p in pools:
        await p.close()


async def test_ten_concurrent_rotations_of_one_token_let_exactly_one_through(store):
    user_id = await new_user(store)
    token = secrets.refresh_token()
    await store.add_refresh_token(user_id, secrets.digest(token))

    outcomes = await asyncio.gather(*(
        store.rotate_refresh_token(secrets.digest(token), secrets.digest(secrets.refresh_token()))
        for _ in range(10)
    ))

    winners = [o for o in outcomes if o.user_id is not None]
    assert len(winners) == 1
    assert all(o.reused for o in outcomes if o.user_id is None)


async def test_reuse_of_a_rotated_token_revokes_the_whole_family(store, pool):
    user_id = await new_user(store)
    first, second, third = (secrets.refresh_token() for _ in range(3))
    await store.add_refresh_token(user_id, secrets.digest(first))
    assert (await store.rotate_refresh_token(secrets.digest(first),
                                             secrets.digest(second))).user_id == user_id
    assert (await store.rotate_refresh_token(secrets.digest(second),
                                             secrets.digest(third))).user_id == user_id

    replay = await store.rotate_refresh_token(secrets.digest(first),
                                              secrets.digest(secrets.refresh_token()))
    assert replay.reused and replay.user_id is None

    latest = await store.rotate_refresh_token(secrets.digest(third),
                                              secrets.digest(secrets.refresh_token()))
    assert latest.user_id is None  # the newest descendant died with its family
    live = await pool.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND NOT revoked", user_id)
    assert live == 0


async def test_another_login_family_survives_a_reuse(store):
    user_id = await new_user(store)
    phone, laptop = secrets.refresh_token(), secrets.refresh_token()
    await store.add_refresh_token(user_id, secrets.digest(phone))
    await store.add_refresh_token(user_id, secrets.digest(laptop))
    await store.rotate_refresh_token(secrets.digest(phone), secrets.digest("x" * 80))
    await store.rotate_refresh_token(secrets.digest(phone), secrets.digest("y" * 80))

    outcome = await store.rotate_refresh_token(secrets.digest(laptop), secrets.digest("z" * 80))
    assert outcome.user_id == user_id


async def test_expired_and_unknown_tokens(store, pool):
    user_id = await new_user(store)
    token = secrets.refresh_token()
    await store.add_refresh_token(user_id, secrets.digest(token))
    await pool.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'"
                       " WHERE token_hash = $1", secrets.digest(token))

    expired = await store.rotate_refresh_token(secrets.digest(token), secrets.digest("n" * 80))
    assert expired.expired and expired.user_id is None
    unknown = await store.rotate_refresh_token(secrets.digest("nope"), secrets.digest("m" * 80))
    assert not unknown.expired and not unknown.reused and unknown.user_id is None


async def test_logout_revokes_only_the_callers_own_token(store):
    owner, other = await new_user(store), await new_user(store)
    token = secrets.refresh_token()
    await store.add_refresh_token(owner, secrets.digest(token))

    await store.revoke_refresh_token(secrets.digest(token), other)
    assert (await store.rotate_refresh_token(
        secrets.digest(token), secrets.digest("a" * 80))).user_id == owner


async def test_password_reset_is_single_use_and_revokes_every_session(store, pool):
    user_id = await new_user(store)
    session = secrets.refresh_token()
    await store.add_refresh_token(user_id, secrets.digest(session))
    reset = secrets.one_time_token()
    await store.set_reset_token(user_id, secrets.digest(reset))

    assert await store.reset_password(secrets.digest(reset), "new-hash") == "reset"
    assert await store.reset_password(secrets.digest(reset), "newer-hash") == "invalid"
    assert (await store.rotate_refresh_token(
        secrets.digest(session), secrets.digest("b" * 80))).user_id is None
    assert await pool.fetchval("SELECT password_hash FROM users WHERE id = $1",
                               user_id) == "new-hash"


async def test_item_09_a_reset_revokes_the_successor_of_a_rotation_in_flight(store, pool):
    """Issue 12, item 9: a rotation holds its family's lock from revoking the presented token
    until its successor is committed; a password reset in that moment must wait for it, or
    its revocation (one statement, one snapshot) misses the successor."""
    user_id = await new_user(store)
    session = secrets.refresh_token()
    await store.add_refresh_token(user_id, secrets.digest(session))
    reset = secrets.one_time_token()
    await store.set_reset_token(user_id, secrets.digest(reset))
    family = await pool.fetchval("SELECT family_id FROM refresh_tokens WHERE token_hash = $1",
                                 secrets.digest(session))
    successor = secrets.digest(secrets.refresh_token())
    async with pool.acquire() as rotation:
        # exactly the statements of AuthStore.rotate_refresh_token, held open before commit
        transaction = rotation.transaction()
        await transaction.start()
        await rotation.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))", str(family))
        new_id = uuid.uuid4()
        await rotation.execute(
            "UPDATE refresh_tokens SET revoked = true, replaced_by = $2 WHERE token_hash = $1",
            secrets.digest(session), new_id)
        # the reset starts between the rotation's revocation and its successor's insert
        resetting = asyncio.create_task(
            store.reset_password(secrets.digest(reset), "new-hash"))
        await asyncio.sleep(0.3)
        await rotation.execute(
            "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, expires_at)"
            " VALUES ($1, $2, $3, $4, now() + interval '7 days')",
            new_id, successor, user_id, family)
        await transaction.commit()
    assert await resetting == "reset"  # neither deadlocked
    assert await pool.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND NOT revoked", user_id) == 0


async def test_expired_one_time_tokens_are_refused(store, pool):
    user_id = await new_user(store)
    verify, reset = secrets.one_time_token(), secrets.one_time_token()
    await store.set_verification_token(user_id, secrets.digest(verify))
    await store.set_reset_token(user_id, secrets.digest(reset))
    await pool.execute(
        "UPDATE users SET verification_token_expires_at = now() - interval '1 s',"
        " reset_token_expires_at = now() - interval '1 s' WHERE id = $1", user_id)

    assert await store.verify_email(secrets.digest(verify)) == "expired"
    assert await store.reset_password(secrets.digest(reset), "h") == "expired"


async def test_duplicate_email_is_refused_by_the_database(store):
    email = f"{uuid.uuid4().hex}@example.com"
    await store.create_user(email, "h", "First")
    with pytest.raises(Exception) as taken:
        await store.create_user(email, "h", "Second")
    assert type(taken.value).__name__ == "EmailTaken"
    assert not isinstance(taken.value, asyncpg.PostgresError)


async def test_login_throttle_locks_an_account_and_an_address(redis):
    throttle = LoginThrottle(redis, max_per_account=3, max_per_ip=5, window_s=60)
    account, ip = f"{uuid.uuid4().hex}@example.com", f"10.9.{uuid.uuid4().int % 250}.1"
    for _ in range(3):
        await throttle.admit(account, ip)  # each attempt counts until it succeeds
    with pytest.raises(TooManyRequests) as locked:
        await throttle.admit(account, ip)
    assert 1 <= locked.value.retry_after <= 60

    for n in range(2):  # other accounts from the same address, up to its own limit
        await throttle.admit(f"other{n}-{account}", ip)
    with pytest.raises(TooManyRequests):
        await throttle.admit(f"fresh-{account}", ip)
    await throttle.admit(f"fresh-{account}", "10.0.0.99")  # another address is not locked


async def test_concurrent_attempts_are_admitted_up_to_the_limit_only(redis):
    throttle = LoginThrottle(redis, max_per_account=10, max_per_ip=1000, window_s=60)
    account = f"{uuid.uuid4().hex}@example.com"
    outcomes = await asyncio.gather(*(throttle.admit(account, "10.2.2.2") for _ in range(64)),
                                    return_exceptions=True)
    assert sum(outcome is None for outcome in outcomes) == 10


async def test_successful_login_clears_the_account_count(redis):
    throttle = LoginThrottle(redis, max_per_account=2, max_per_ip=100, window_s=60)
    account = f"{uuid.uuid4().hex}@example.com"
    await throttle.admit(account, "10.1.1.1")
    await throttle.succeeded(account, "10.1.1.1")
    await throttle.admit(account, "10.1.1.1")
    await throttle.admit(account, "10.1.1.1")  # the success gave its attempt back


async def test_login_throttle_fails_open_without_redis():
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    throttle = LoginThrottle(unreachable, max_per_account=1, max_per_ip=1, window_s=60)
    await throttle.admit("a@example.com", "10.0.0.1")
    await throttle.admit("a@example.com", "10.0.0.1")
    await unreachable.aclose()


# --- provider sign-ins (docs/api.md section 16) ---------------------------------------------

async def identities_of(pool, user_id: uuid.UUID) -> list[str]:
    rows = await pool.fetch("SELECT provider FROM oauth_identities WHERE user_id = $1"
                            " ORDER BY provider", user_id)
    return [row["provider"] for row in rows]


async def provider_sign_in(store: AuthStore, provider: str, email: str, *, trusted: bool):
    return await store.sign_in_with_provider(
        provider, f"{provider}-{email}", email=email, email_verified=True, name="Someone",
        trust_email=trusted)


async def test_a_password_reset_proves_the_address_and_ends_untrusted_identities(pool, store):
    email = f"planted-{uuid.uuid4().hex[:8]}@example.com"
    made = await provider_sign_in(store, "elsewhere", email, trusted=False)
    assert made.created and made.user is not None
    assert made.user.password_hash is None and made.user.email_verified_at is None
    await store.set_reset_token(made.user.id, secrets.digest("reset-me"))
    assert await store.reset_password(secrets.digest("reset-me"), "new-hash") == "reset"
    user = await store.user_by_id(made.user.id)
    assert user is not None and user.password_hash == "new-hash"
    assert user.email_verified_at is not None
    assert await identities_of(pool, made.user.id) == []
    # and the untrusted provider may not sign in to it any more
    again = await provider_sign_in(store, "elsewhere", email, trusted=False)
    assert again.refused == "untrusted-taken"


async def test_a_trusted_link_keeps_trusted_identities_and_ends_untrusted_ones(pool, store):
    email = f"linked-{uuid.uuid4().hex[:8]}@example.com"
    made = await provider_sign_in(store, "elsewhere", email, trusted=False)
    first = await provider_sign_in(store, "google", email, trusted=True)
    assert first.user is not None and made.user is not None
    assert first.user.id == made.user.id and not first.created
    assert await identities_of(pool, made.user.id) == ["google"]
    second = await provider_sign_in(store, "corp", email, trusted=True)
    assert second.user is not None and second.user.id == made.user.id
    assert await identities_of(pool, made.user.id) == ["corp", "google"]


async def test_concurrent_first_sign_ins_make_one_account(store):
    email = f"racing-{uuid.uuid4().hex[:8]}@example.com"
    outcomes = await asyncio.gather(*(provider_sign_in(store, "google", email, trusted=True)
                                      for _ in range(5)))
    assert len({outcome.user.id for outcome in outcomes if outcome.user}) == 1
    assert sum(outcome.created for outcome in outcomes) == 1
