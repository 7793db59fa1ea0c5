"""Small blocking HTTP helpers for tests that drive real processes (stdlib only)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from typing import Any


def request_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
                 timeout: float = 10) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, method=method, data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, response_headers = error.code, error.read(), error.headers
    return status, (json.loads(raw) if raw else None), dict(response_headers)


RABBIT_API = os.environ.get("RABBITMQ_API_URL", "http://127.0.0.1:15672/api")
RABBIT_API_AUTH = os.environ.get("RABBITMQ_API_AUTH", "guest:guest")


def rabbit_api(method: str, path: str, body: object | None = None) -> object:
    """Call the RabbitMQ management HTTP API (what an operator's UI uses)."""
    request = urllib.request.Request(
        f"{RABBIT_API}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(RABBIT_API_AUTH.encode()).decode(),
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def recreate_vhost(name: str) -> None:
    """A RabbitMQ vhost created anew (queues of earlier runs gone), guest allowed in it."""
    try:
        rabbit_api("DELETE", f"/vhosts/{name}")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    rabbit_api("PUT", f"/vhosts/{name}", {})
    rabbit_api("PUT", f"/permissions/{name}/guest",
               {"configure": ".*", "write": ".*", "read": ".*"})


RABBIT_NODE = os.environ.get("RABBITMQ_NODENAME", "rabbit@localhost")  # infra/lib.sh


def close_all_connections(vhost: str) -> None:
    """Make the broker drop every connection to `vhost` (as a broker restart would)."""
    subprocess.run(
        ["rabbitmqctl", "-n", RABBIT_NODE, "close_all_connections", "-p", vhost,
         "test: drop connections"],
        check=True, capture_output=True, timeout=60,
    )


def restart_broker() -> None:
    """Stop the broker's application and start it again (every connection drops; queues,
    their messages and delayed messages come back from disk), then wait until it serves."""
    for command in (["stop_app"], ["start_app"], ["await_startup", "--timeout", "60"]):
        subprocess.run(["rabbitmqctl", "-n", RABBIT_NODE, *command], check=True,
                       capture_output=True, timeout=120)


def get_json(url: str, timeout: float = 10) -> tuple[int, Any]:
    status, body, _ = request_json("GET", url, timeout=timeout)
    return status, body


async def recreate_database(url: str) -> None:
    """Drop and create the database named in `url` (the role needs CREATEDB)."""
    import asyncpg

    base, _, name = url.rpartition("/")
    connection = await asyncpg.connect(f"{base}/postgres")
    try:
        await _drop(connection, name)
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(url: str) -> None:
    import asyncpg

    base, _, name = url.rpartition("/")
    connection = await asyncpg.connect(f"{base}/postgres")
    try:
        await _drop(connection, name)
    finally:
        await connection.close()


async def _drop(connection, name: str) -> None:
    """DROP ... WITH (FORCE) cannot end an autovacuum worker (a superuser's process) for an
    ordinary role: one may have started on a database just written to, so wait for it."""
    import asyncio

    import asyncpg

    for attempt in range(50):
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.InsufficientPrivilegeError:
            if attempt == 49:
                raise
            await asyncio.sleep(0.2)


class MailSink:
    """A real SMTP server (aiosmtpd) in a thread, keeping every message it receives."""

    def __init__(self) -> None:
        import threading

        from aiosmtpd.controller import Controller

        self.messages: list = []
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, _server, _session, envelope):
                from email import message_from_bytes, policy

                message = message_from_bytes(envelope.original_content, policy=policy.default)
                with sink._lock:
                    sink.messages.append(message)
                return "250 OK"

        import socket

        with socket.socket() as probe:  # aiosmtpd cannot listen on port 0 and report it
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> str:
        self._controller.start()
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._controller.stop()

    def wait_for(self, to: str, subject: str, timeout: float = 10.0, after: int = 0):
        """The first message to `to` with `subject` among those received after index `after`."""
        import time

        until = time.monotonic() + timeout
        while time.monotonic() < until:
            with self._lock:
                for message in self.messages[after:]:
                    if message["To"] == to and message["Subject"] == subject:
                        return message
            time.sleep(0.05)
        raise AssertionError(f"no mail {subject!r} to {to} within {timeout} s")

    def count(self) -> int:
        with self._lock:
            return len(self.messages)


def link_in(message, path: str) -> str:
    """The URL in a mail's text that contains `path`."""
    import re

    text = message.get_body(("plain",)).get_content()
    found = re.search(r"https?://\S*" + re.escape(path) + r"\S*", text)
    assert found, f"no link to {path} in:\n{text}"
    return found.group(0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_settings(*services: Any) -> Any:
    """The test settings with `services`' HTTP ports moved to free ones, on loopback (a
    `make run` stack may hold the usual ports)."""
    import dataclasses

    from contracts.settings import load_settings

    loaded = load_settings()
    ports = {**loaded.service_ports, **{service: free_port() for service in services}}
    return dataclasses.replace(loaded, service_host="127.0.0.1", service_ports=ports)
