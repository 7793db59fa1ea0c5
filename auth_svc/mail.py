"""Outgoing mail over SMTP (aiosmtplib), sent in the background after the response.

A failure to send never changes an answer (docs/api.md section 3.1): messages wait in a bounded
queue and are retried a few times; what still fails is logged, never raised.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from contracts.logging import get_logger
from contracts.tasks import stop_task

log = get_logger(__name__)

ATTEMPTS = 3
QUEUE_SIZE = 1000


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    use_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        use_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname or "127.0.0.1",
            port=parts.port or (465 if use_tls else 25),
            use_tls=use_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class Mailer:
    def __init__(self, smtp_url: str, sender: str) -> None:
        self._target = SmtpTarget.parse(smtp_url) if smtp_url else None
        self._sender = sender
        self._queue: asyncio.Queue[EmailMessage] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    @property
    def configured(self) -> bool:
        return self._target is not None

    async def start(self) -> None:
        if self._target is not None:
            self._task = asyncio.create_task(self._run(), name="mailer")

    def send_later(self, to: str, subject: str, text: str) -> None:
        if self._target is None:
            return
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self._sender, to, subject
        message.set_content(text)
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            log.error("mail queue full, message dropped", subject=subject)

    async def close(self, grace_s: float = 5.0) -> None:
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), grace_s)
        except TimeoutError:
            log.warning("mail not sent before shutdown", pending=self._queue.qsize())
        await stop_task(self._task)

    async def _run(self) -> None:
        assert self._target is not None
        target = self._target
        while True:
            message = await self._queue.get()
            try:
                for attempt in range(1, ATTEMPTS + 1):
                    try:
                        await aiosmtplib.send(
                            message, hostname=target.hostname, port=target.port,
                            use_tls=target.use_tls, username=target.username,
                            password=target.password, timeout=10,
                        )
                        log.info("mail sent", subject=message["Subject"])
                        break
                    except (aiosmtplib.SMTPException, OSError) as exc:
                        if attempt == ATTEMPTS:
                            log.error("mail not sent", subject=message["Subject"],
                                      error=repr(exc))
                        else:
                            await asyncio.sleep(0.5 * attempt)
            finally:
                self._queue.task_done()
