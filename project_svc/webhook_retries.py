"""When a failed webhook delivery is tried again, and where it waits meanwhile: in the broker,
never in a process's memory, so a restart or a crash loses nothing.

Schedule: `WEBHOOK_RETRY_SCHEDULE`, seconds between attempts, comma-separated (default the
Svix schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts in about 28 hours),
each delay drawn within +-10 % (jitter, so endpoints that failed together are not retried
together).

A retry is the next job published with confirms, before the current job is acked, into the
delay queue of its nominal delay (`Broker.publish_confirmed(..., delay_s=, wait_s=)`,
contracts.amqp.declare_delay_queue: `delay.webhook.delivery.due.<seconds>s`), expiring after
the jittered wait, then dead-lettered back into `webhook.deliveries`. A changed schedule
declares new queues (the old ones drain and can be deleted).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

JITTER = 0.1


@dataclass(frozen=True)
class RetrySchedule:
    delays_s: tuple[float, ...]  # WEBHOOK_RETRY_SCHEDULE (contracts.settings)

    @property
    def max_attempts(self) -> int:
        return len(self.delays_s) + 1

    def delay_after(self, attempt: int) -> float | None:
        """The nominal delay before attempt `attempt + 1`; None after the last attempt."""
        if attempt < 1 or attempt > len(self.delays_s):
            return None
        return self.delays_s[attempt - 1]

    @staticmethod
    def jittered(delay_s: float) -> float:
        return delay_s * random.uniform(1 - JITTER, 1 + JITTER)
