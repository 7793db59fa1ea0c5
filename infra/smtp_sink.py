"""Development SMTP sink: accepts every message and writes it to a file instead of sending it.

`make run` starts it and points the auth service's SMTP_URL here, so a developer can open the
verification and reset links from `.local/mail/`. Each message's file is logged with its links.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = os.environ.get("SMTP_SINK_HOST", "127.0.0.1")
PORT = int(os.environ.get("SMTP_SINK_PORT", "1025"))
DIRECTORY = Path(os.environ.get("SMTP_SINK_DIR", ".local/mail"))


class WriteToFolder:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        self.count += 1
        path = DIRECTORY / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.count:04d}.eml"
        content = envelope.original_content or b""
        await asyncio.to_thread(path.write_bytes, content)
        message = message_from_bytes(content, policy=policy.default)
        body = message.get_body(("plain",))
        links = re.findall(r"https?://\S+", body.get_content() if body else "")
        print(f"mail to {', '.join(envelope.rcpt_tos)}: {message['Subject']!r} -> {path}"
              + "".join(f"\n    {link}" for link in links), flush=True)
        return "250 Message accepted for delivery"


async def main() -> None:
    handler = WriteToFolder()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="smtp-sink"), HOST, PORT)
    print(f"SMTP sink on {HOST}:{PORT}, writing messages to {DIRECTORY}/", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    asyncio.run(main())
