"""Operator commands: `python -m auth_svc <command>` (also `make admin EMAIL=...`).

  migrate                      apply pending migrations
  set-role EMAIL ROLE          ROLE is ADMIN, DEVELOPER or VIEWER (takes effect at next refresh)
  set-active EMAIL true|false  deactivate or reactivate an account
"""

from __future__ import annotations

import asyncio
import sys

from auth_svc.app import open_database
from auth_svc.store import AuthStore
from contracts.identity import Role
from contracts.settings import SettingsError, load_settings


async def _run(argv: list[str]) -> int:
    settings = load_settings("auth")
    command, args = argv[0], argv[1:]
    if command == "set-role" and len(args) == 2 and args[1].upper() in Role.__members__:
        pool = await open_database(settings)
        try:
            found = await AuthStore(pool).set_role(args[0].strip().lower(), args[1].upper())
        finally:
            await pool.close()
        print(f"{args[0]}: role {args[1].upper()}" if found else f"{args[0]}: no such user")
        return 0 if found else 1
    if command == "set-active" and len(args) == 2 and args[1] in ("true", "false"):
        pool = await open_database(settings)
        try:
            found = await AuthStore(pool).set_active(args[0].strip().lower(), args[1] == "true")
        finally:
            await pool.close()
        print(f"{args[0]}: active {args[1]}" if found else f"{args[0]}: no such user")
        return 0 if found else 1
    if command == "migrate" and not args:
        pool = await open_database(settings)
        await pool.close()
        print("auth database migrated")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    try:
        return asyncio.run(_run(argv))
    except SettingsError as exc:
        print(f"auth_svc: {exc}", file=sys.stderr)
        return 2
