"""`python -m logging_svc copy-logs --from mongodb --to postgresql`: moves an installation's
log entries from one store to the other.

- Idempotent: the target stores each entry once (`LogStore.store_once`, keyed by the entry's
  identity), so copying twice, or after a crash between a write and its checkpoint, adds
  nothing twice; entries already past the retention are not copied.
- Resumable: after each batch the source's resume token is written to a checkpoint file
  (atomically, by rename); a later run continues after it (`--restart` starts over).
- Progress: one line per batch with the count, the new entries and the rate.

Switch the services to the target store first (LOG_STORE), so new traffic lands there, then
copy: entries written to the source while it is read may land behind its read position.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contracts.mongo import Mongo
from contracts.settings import LogStoreKind, Settings, SettingsError, load_settings
from logging_svc.entries import LogStore

STORES: tuple[LogStoreKind, ...] = ("mongodb", "postgresql")


@dataclass
class Progress:
    read: int = 0
    new: int = 0
    resume: str | None = None
    done: bool = False


def load_checkpoint(path: Path) -> Progress:
    if not path.exists():
        return Progress()
    state = json.loads(path.read_text())
    return Progress(state["read"], state["new"], state["resume"], state["done"])


def save_checkpoint(path: Path, progress: Progress) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(progress.__dict__))
    os.replace(partial, path)  # a crash leaves the old checkpoint or the new one, whole


async def copy_logs(source: LogStore, target: LogStore, checkpoint: Path, *,
                    batch: int = 1000, say: Callable[[str], object] = print) -> Progress:
    progress = load_checkpoint(checkpoint)
    if progress.done:
        say(f"already copied ({progress.read} read, {progress.new} new): "
            f"{checkpoint} says so; --restart copies again")
        return progress
    started, first = time.monotonic(), progress.read
    while True:
        records, resume = await source.scan(progress.resume, batch)
        if not records:
            progress.done = True
            save_checkpoint(checkpoint, progress)
            say(f"done: {progress.read} entries read, {progress.new} new in the target")
            return progress
        progress.new += await target.store_once(records)
        progress.read += len(records)
        progress.resume = resume
        save_checkpoint(checkpoint, progress)
        rate = (progress.read - first) / max(time.monotonic() - started, 1e-6)
        say(f"{progress.read} entries read, {progress.new} new, {rate:,.0f}/s")


async def open_store(kind: LogStoreKind, settings: Settings) -> tuple[LogStore, Mongo | None]:
    from dataclasses import replace

    from logging_svc.app import open_log_store

    return await open_log_store(replace(settings, log_store=kind))


async def main(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="python -m logging_svc copy-logs",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", choices=STORES, required=True)
    parser.add_argument("--to", dest="target", choices=STORES, required=True)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="progress file (default copy-logs-<from>-to-<to>.json here)")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--restart", action="store_true", help="ignore the checkpoint")
    args = parser.parse_args(argv)
    if args.source == args.target:
        parser.error("--from and --to must differ")
    checkpoint = args.checkpoint or Path(f"copy-logs-{args.source}-to-{args.target}.json")
    if args.restart:
        checkpoint.unlink(missing_ok=True)
    source, source_client = await open_store(args.source, settings)
    target, target_client = await open_store(args.target, settings)
    try:
        await copy_logs(source, target, checkpoint, batch=max(1, args.batch),
                        say=lambda line: print(line, flush=True))
    finally:
        for store, client in ((source, source_client), (target, target_client)):
            await store.close()
            if client is not None:
                await client.close()
    return 0


def run(argv: list[str]) -> int:
    """The command line: `copy-logs ...` (the only command)."""
    if not argv or argv[0] != "copy-logs":
        print("usage: python -m logging_svc copy-logs --from STORE --to STORE", file=sys.stderr)
        return 2
    try:
        settings = load_settings("logging")
    except SettingsError as exc:
        print(f"logging_svc: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(main(argv[1:], settings))
