"""`python -m logging_svc copy-logs`: an installation's entries move from MongoDB to
PostgreSQL whole, once, resumably (against the real servers)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.identity import Caller, Role
from contracts.schemas.logs import LogIngest
from contracts.settings import Settings
from logging_svc.copy import copy_logs, load_checkpoint
from logging_svc.entries import LogFilter, LogRecord
from tests.factories import request_completed
from tests.integration.conftest import store_under_test

ADMIN = Caller("admin", "admin@example.com", Role.ADMIN)


def utc_text(moment: datetime) -> str:
    """A moment as a client sends it: ISO-8601 in UTC ending in Z, to the microsecond."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def records(count: int) -> list[LogRecord]:
    now = datetime.now(UTC)
    gateway = [LogRecord.of_event(request_completed(i, user_id=f"u{i % 3}",
                                                    owner_id="owner", project_id="p1"))
               for i in range(count)]
    external = [LogRecord.of_ingest(LogIngest.model_validate({
        "requestId": str(uuid.uuid4()), "method": "PUT", "path": f"/ext/{i}",
        "statusCode": 404, "latency": 3, "ip": "10.1.1.1",
        "timestamp": utc_text(now - timedelta(days=2, seconds=i)),
        "error": {"code": "X", "message": "y"}}), now) for i in range(count // 4)]
    return gateway + external


async def test_copying_moves_every_entry_once_and_resumes(settings: Settings, unique: str,
                                                          tmp_path: Path, logs_database_url,
                                                          mongo_test_db):
    async with store_under_test("mongodb", settings, unique) as mongo, \
            store_under_test("postgresql", settings, unique) as pg:
        sent = records(240)
        assert await mongo.store.store_once(sent) == len(sent)
        checkpoint = tmp_path / "copy.json"

        class Interrupted(Exception):
            pass

        def stop_after_two(line: str, lines: list[str] = []) -> None:  # noqa: B006
            lines.append(line)
            if len(lines) == 2:
                raise Interrupted  # as a crash after the second batch's checkpoint

        with pytest.raises(Interrupted):
            await copy_logs(mongo.store, pg.store, checkpoint, batch=50, say=stop_after_two)
        assert load_checkpoint(checkpoint).read == 100
        done = await copy_logs(mongo.store, pg.store, checkpoint, batch=50, say=lambda _: None)
        assert (done.read, done.new, done.done) == (len(sent), len(sent), True)
        assert await pg.store.count(ADMIN, LogFilter(), up_to=10_000) == len(sent)
        for record in sent[::17]:  # the same entries, `_id` included
            assert await pg.store.by_request_id(ADMIN, record.request_id) == \
                await mongo.store.by_request_id(ADMIN, record.request_id)
        # a second copy from scratch finds everything there already
        checkpoint.unlink()
        again = await copy_logs(mongo.store, pg.store, checkpoint, batch=100,
                                say=lambda _: None)
        assert (again.read, again.new) == (len(sent), 0)


async def test_the_command_line_copies_between_the_configured_stores(
        settings: Settings, unique: str, tmp_path: Path, logs_database_url, mongo_test_db):
    async with store_under_test("mongodb", settings, unique) as mongo, \
            store_under_test("postgresql", settings, unique) as pg:
        sent = records(30)
        await mongo.store.store_once(sent)
        env = {**os.environ, "MONGO_DB": f"{settings.mongo_db}_{unique}",
               "LOGS_DATABASE_URL": f"{settings.logs_database_url}_{unique}"}
        command = [sys.executable, "-m", "logging_svc", "copy-logs", "--from", "mongodb",
                   "--to", "postgresql", "--checkpoint", str(tmp_path / "cli.json")]
        done = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True,
                                       text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"done: {len(sent)} entries read, {len(sent)} new" in done.stdout, done.stdout
        assert await pg.store.count(ADMIN, LogFilter(), up_to=1000) == len(sent)
        refused = await asyncio.to_thread(
            subprocess.run, [*command[:4], "--from", "mongodb", "--to", "mongodb"], env=env,
            capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "must differ" in refused.stderr
