"""structlog configured as a processor pipeline that writes one JSON object per line.

Request-scoped values (request id, user) are bound with `structlog.contextvars`, so every
line logged while handling a request carries them without passing a logger around.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor


def configure_logging(service: str, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level)
    # aio-pika/aiormq log every reconnect attempt, once a second; contracts.amqp logs the loss
    # and the recovery once each instead.
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_service(service),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )


def _dumps(value: object, **_: object) -> bytes:
    return orjson.dumps(value, default=str)


def _add_service(service: str) -> Processor:
    def processor(_logger: object, _name: str, event: EventDict) -> EventDict:
        event.setdefault("service", service)
        return event

    return processor


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    # configure_logging's wrapper class (structlog's default one too); get_logger is untyped
    # because structlog cannot know which wrapper class was configured
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger
