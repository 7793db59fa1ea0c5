"""`python -m project_svc reseal-webhook-secrets` on the real PostgreSQL: after an encryption
key rotation it seals every webhook secret (and a rotation's previous one) under the new key,
so the old key can go; values already current are left alone; one no key opens is reported,
left as it is, and makes the command exit 1."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from contracts.migrations import open_migrated_pool
from project_svc.app import MIGRATIONS
from project_svc.reseal import reseal_secrets
from project_svc.webhook_signing import SecretBox, new_secret
from tests.support import drop_database, recreate_database

pytestmark = pytest.mark.integration

OLD, NEW, LOST = os.urandom(32), os.urandom(32), os.urandom(32)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture
async def database(project_database_url: str, unique: str) -> AsyncIterator[str]:
    url = f"{project_database_url}_{unique}"
    await recreate_database(url)
    yield url
    await drop_database(url)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_migrated_pool(database, MIGRATIONS)
    yield pool
    await pool.close()


async def add_webhook(pool: asyncpg.Pool, key: bytes, *, with_previous: bool = False
                      ) -> tuple[str, str, str | None]:
    """A webhook whose secrets are sealed under `key`: (id, secret, previous secret)."""
    project_id, webhook_id = uuid.uuid4(), uuid.uuid4()
    box = SecretBox(key)
    secret, previous = new_secret(), new_secret() if with_previous else None
    await pool.execute("INSERT INTO projects (id, name, user_id) VALUES ($1, 'p', 'u')",
                       project_id)
    await pool.execute(
        "INSERT INTO webhooks (id, project_id, name, url, events, secret_sealed,"
        " previous_secret_sealed) VALUES ($1, $2, 'w', 'https://example.com', '{}', $3, $4)",
        webhook_id, project_id, box.seal(secret, str(webhook_id)),
        None if previous is None else box.seal(previous, str(webhook_id)))
    return str(webhook_id), secret, previous


async def opened_with(pool: asyncpg.Pool, box: SecretBox) -> dict[str, list[str | None]]:
    rows = await pool.fetch("SELECT id, secret_sealed, previous_secret_sealed FROM webhooks")
    return {str(r["id"]): [None if r[c] is None else box.open(r[c], str(r["id"]))
                           for c in ("secret_sealed", "previous_secret_sealed")] for r in rows}


async def test_every_secret_is_sealed_again_under_the_current_key(pool: asyncpg.Pool):
    made = [await add_webhook(pool, OLD, with_previous=n % 2 == 0) for n in range(7)]
    made.append(await add_webhook(pool, NEW))  # already current
    rotated = SecretBox(NEW, [OLD])
    lines: list[str] = []
    counts = await reseal_secrets(pool, rotated, batch=3, say=lines.append)
    assert (counts.seen, counts.resealed, counts.unreadable) == (8, 7, 0), lines
    # the old key can go: the new one alone opens every value, to the same secrets
    assert await opened_with(pool, SecretBox(NEW)) == {
        webhook_id: [secret, previous] for webhook_id, secret, previous in made}
    again = await reseal_secrets(pool, rotated, say=lines.append)
    assert (again.seen, again.resealed) == (8, 0)


async def test_the_command_line_reports_what_no_key_opens(database: str, pool: asyncpg.Pool):
    await add_webhook(pool, OLD)
    lost_id, _, _ = await add_webhook(pool, LOST)
    env = {**os.environ, "PROJECT_DATABASE_URL": database,
           "WEBHOOK_ENCRYPTION_KEY": b64(NEW), "WEBHOOK_ENCRYPTION_OLD_KEYS": b64(OLD)}
    command = [sys.executable, "-m", "project_svc", "reseal-webhook-secrets"]
    done = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True,
                                   text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"webhook {lost_id}:" in done.stdout
    assert "done: 2 webhooks, 1 resealed under the current key, 1 unreadable" in done.stdout
    sealed = await pool.fetchval("SELECT secret_sealed FROM webhooks WHERE id = $1",
                                 uuid.UUID(lost_id))
    assert SecretBox(LOST).open(sealed, lost_id)  # left as it was
    usage = await asyncio.to_thread(subprocess.run, [*command[:3], "reseal"], env=env,
                                    capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage:" in usage.stderr
