"""project_svc.webhook_sender against real HTTP receivers on loopback: a 2xx is delivered and
its signature verifies with the `standardwebhooks` package; other answers are failed attempts
with a reason; no redirect is followed; the target policy is applied at connect time; the
deadline and the answer's bound hold."""

from __future__ import annotations

import time

from aiohttp import web
from standardwebhooks import Webhook

from contracts.upstream import UpstreamPolicy
from project_svc.webhook_sender import WebhookSender
from project_svc.webhook_signing import new_secret, signed_headers
from tests.webhook_support import Receiver, receiving, status

BODY = b'{"type":"webhook.test","timestamp":"2026-12-03T17:00:00.000Z","data":{}}'
LOOPBACK_ALLOWED = UpstreamPolicy(["127.0.0.0/8"])


async def sent(policy: UpstreamPolicy, url: str, **options: float) -> object:
    sender = WebhookSender(policy, **options)  # type: ignore[arg-type]
    await sender.start()
    try:
        secret = new_secret()
        return await sender.send(url, BODY, signed_headers("msg_1", int(time.time()), BODY,
                                                           [secret]))
    finally:
        await sender.close()


async def test_a_2xx_is_delivered_and_signed_as_the_standard_says() -> None:
    sender = WebhookSender(LOOPBACK_ALLOWED)
    await sender.start()
    secret = new_secret()
    async with receiving(Receiver([lambda _: web.Response(status=204)])) as receiver:
        attempt = await sender.send(receiver.url, BODY,
                                    signed_headers("msg_1", int(time.time()), BODY, [secret]))
    await sender.close()
    assert attempt.delivered and attempt.status_code == 204 and attempt.error is None
    got = receiver.received[0]
    assert got.body == BODY and got.headers["webhook-id"] == "msg_1"
    Webhook(secret).verify(got.body, got.headers)


async def test_another_status_is_a_failed_attempt_with_its_reason() -> None:
    async with receiving(Receiver([status(500)])) as receiver:
        attempt = await sent(LOOPBACK_ALLOWED, receiver.url)
    assert not attempt.delivered and attempt.status_code == 500
    assert attempt.error == "HTTP 500"


async def test_a_redirect_is_not_followed_even_to_an_allowed_address() -> None:
    async with receiving(Receiver(), host="127.0.0.2") as internal:
        async with receiving(Receiver([status(302, Location=internal.url)])) as receiver:
            attempt = await sent(LOOPBACK_ALLOWED, receiver.url)
    assert attempt.status_code == 302 and not attempt.delivered
    assert "redirects are not followed" in attempt.error
    assert internal.received == []


async def test_private_targets_are_refused_without_connecting() -> None:
    async with receiving(Receiver()) as receiver:
        by_address = await sent(UpstreamPolicy(), receiver.url)
        by_name = await sent(UpstreamPolicy(), receiver.url.replace("127.0.0.1", "localhost"))
    assert receiver.received == []
    for attempt in (by_address, by_name):
        assert attempt.status_code is None and attempt.error.startswith("Target refused")


async def test_the_deadline_and_the_answer_bound_hold() -> None:
    async with receiving(Receiver(delay_s=2)) as slow:
        attempt = await sent(LOOPBACK_ALLOWED, slow.url, timeout_s=0.3)
    assert attempt.status_code is None and attempt.error == "No answer within 0.3 s"
    huge = Receiver([lambda _: web.Response(body=b"x" * 1_000_000)])
    async with receiving(huge) as receiver:
        attempt = await sent(LOOPBACK_ALLOWED, receiver.url, max_answer_bytes=100)
    assert attempt.delivered and attempt.answer == "x" * 100


async def test_a_closed_port_is_a_connection_failure() -> None:
    async with receiving(Receiver()) as receiver:
        url = receiver.url
    attempt = await sent(LOOPBACK_ALLOWED, url)
    assert attempt.status_code is None and attempt.error.startswith("Connection failed")
