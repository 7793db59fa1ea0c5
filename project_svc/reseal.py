"""`python -m project_svc reseal-webhook-secrets`: seals every webhook secret (and a
rotation's previous secret) under the current WEBHOOK_ENCRYPTION_KEY, so an old key can be
dropped from WEBHOOK_ENCRYPTION_OLD_KEYS without every webhook rotating its secret.

- Online: the service keeps running; rows are locked (`FOR UPDATE`) a batch at a time, in
  id order, and a secret rotated meanwhile is simply found current.
- Idempotent: a value already under the current key is left alone, so running it again, or
  after an interruption, is safe.
- A value no configured key opens is reported (its webhook's id) and left as it is; the
  command then exits 1: a key it needs is missing from the settings.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from contracts.settings import Settings, SettingsError, load_settings
from project_svc.webhook_signing import SecretBox, SecretUnreadable, secret_box

COMMAND = "reseal-webhook-secrets"
_SEALED = ("secret_sealed", "previous_secret_sealed")


@dataclass
class Resealed:
    seen: int = 0
    resealed: int = 0
    unreadable: int = 0


async def reseal_secrets(pool: asyncpg.Pool, box: SecretBox, *, batch: int = 200,
                         say: Callable[[str], object] = print) -> Resealed:
    counts = Resealed()
    after = uuid.UUID(int=0)
    while True:
        async with pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "SELECT id, secret_sealed, previous_secret_sealed FROM webhooks"
                " WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE", after, batch)
            for row in rows:
                counts.seen += 1
                webhook_id = str(row["id"])
                try:
                    changed = {column: box.seal(box.open(row[column], webhook_id), webhook_id)
                               for column in _SEALED
                               if row[column] is not None and not box.is_current(row[column])}
                except SecretUnreadable as exc:
                    counts.unreadable += 1
                    say(f"webhook {webhook_id}: {exc}; left as it is")
                    continue
                if changed:
                    await connection.execute(
                        "UPDATE webhooks SET secret_sealed = coalesce($2, secret_sealed),"
                        " previous_secret_sealed = coalesce($3, previous_secret_sealed)"
                        " WHERE id = $1", row["id"], changed.get("secret_sealed"),
                        changed.get("previous_secret_sealed"))
                    counts.resealed += 1
        if not rows:
            break
        after = rows[-1]["id"]
        say(f"{counts.seen} webhooks read, {counts.resealed} resealed")
    say(f"done: {counts.seen} webhooks, {counts.resealed} resealed under the current key, "
        f"{counts.unreadable} unreadable")
    return counts


async def main(settings: Settings) -> int:
    pool = await asyncpg.create_pool(settings.project_database_url, min_size=1, max_size=1,
                                     statement_cache_size=0)  # PgBouncer-safe
    try:
        counts = await reseal_secrets(pool, secret_box(settings),
                                      say=lambda line: print(line, flush=True))
    finally:
        await pool.close()
    return 1 if counts.unreadable else 0


def run(argv: list[str]) -> int:
    """The command line: `reseal-webhook-secrets` (the only command)."""
    if argv != [COMMAND]:
        print(f"usage: python -m project_svc {COMMAND}", file=sys.stderr)
        return 2
    try:
        settings = load_settings("project")
    except SettingsError as exc:
        print(f"project_svc: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(main(settings))
