"""project_svc.webhook_retries: the schedule's parsing, attempts and jitter."""

from __future__ import annotations

import pytest

from contracts.amqp import delay_queue_name
from contracts.settings import DEFAULT_WEBHOOK_RETRY_SCHEDULE, retry_schedule
from project_svc.webhook_retries import RetrySchedule


def test_the_default_is_svix_schedule_of_eight_attempts() -> None:
    delays = retry_schedule(DEFAULT_WEBHOOK_RETRY_SCHEDULE)
    assert delays == (5, 300, 1800, 7200, 18000, 36000, 36000)
    schedule = RetrySchedule(delays)
    assert schedule.max_attempts == 8
    assert [schedule.delay_after(n) for n in range(0, 9)] == [None, *delays, None]


def test_a_schedule_in_seconds_is_parsed() -> None:
    assert retry_schedule(" 1, 2.5 ,10") == (1, 2.5, 10)


@pytest.mark.parametrize("text", ["", ",", "5,x", "0", "-1", "999999999"])
def test_a_bad_schedule_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        retry_schedule(text)


def test_jitter_stays_within_a_tenth() -> None:
    draws = [RetrySchedule.jittered(100) for _ in range(1000)]
    assert all(90 <= d <= 110 for d in draws) and len(set(draws)) > 100


def test_each_delay_has_a_queue_of_its_own() -> None:
    assert delay_queue_name("webhook.delivery.due", 5) == "delay.webhook.delivery.due.5s"
    assert delay_queue_name("webhook.delivery.due", 0.5) == "delay.webhook.delivery.due.0.5s"
