import asyncio
import re
import threading
import time

from argon2 import PasswordHasher

from auth_svc import secrets
from auth_svc.mail import SmtpTarget
from auth_svc.passwords import Passwords


def test_token_formats():
    assert re.fullmatch(r"[0-9a-f]{80}", secrets.refresh_token())
    assert re.fullmatch(r"[0-9a-f]{32}", secrets.one_time_token())
    assert secrets.digest("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


async def test_passwords_hash_verify_and_refuse_unknown_users():
    passwords = Passwords()
    await passwords.start()
    stored = await passwords.hash("Passw0rdX")
    assert stored.startswith("$argon2id$")
    assert await passwords.verify(stored, "Passw0rdX")
    assert not await passwords.verify(stored, "wrong")
    assert not await passwords.verify(None, "not-a-real-password-only-for-timing-0")
    assert not await passwords.verify("garbage", "x")
    assert not passwords.needs_rehash(stored)


async def test_no_more_hashes_run_at_once_than_the_threads_allowed(monkeypatch):
    """A burst of logins waits its turn: each hash holds ARGON2_MEMORY_KIB while it runs."""
    running, peak, lock = 0, 0, threading.Lock()
    real_verify = PasswordHasher.verify

    def counted(self, stored, password):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            time.sleep(0.01)  # long enough for the others to pile up behind it
            return real_verify(self, stored, password)
        finally:
            with lock:
                running -= 1

    passwords = Passwords(time_cost=1, memory_kib=8, parallelism=1, threads=2)
    await passwords.start()
    stored = await passwords.hash("Passw0rdX")
    monkeypatch.setattr(PasswordHasher, "verify", counted)
    results = await asyncio.gather(*(passwords.verify(stored, "Passw0rdX") for _ in range(20)))
    await passwords.close()
    assert all(results) and peak == 2


def test_smtp_urls():
    assert SmtpTarget.parse("smtp://127.0.0.1:1025") == SmtpTarget(
        "127.0.0.1", 1025, False, None, None)
    assert SmtpTarget.parse("smtps://me%40x.io:p%3Ass@mail.example.com") == SmtpTarget(
        "mail.example.com", 465, True, "me@x.io", "p:ss")
