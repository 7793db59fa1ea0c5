"""Test-wide settings: every test runs against the real local servers, isolated from a
`make run` stack on the same machine by its own RabbitMQ vhost, Redis database, Mongo database
and PostgreSQL databases."""

from __future__ import annotations

import os
import urllib.error

import pytest

from tests.support import recreate_vhost

TEST_VHOST = os.environ.get("TEST_VHOST", "gw-test")

TEST_ENV = {
    "APP_ENV": "test",
    "LOG_LEVEL": "WARNING",
    "AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{TEST_VHOST}",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "CACHE_REDIS_URL": "redis://127.0.0.1:6380/15",
    "MONGO_URL": "mongodb://127.0.0.1:27017",
    "MONGO_DB": "gateway_test",
    "AUTH_DATABASE_URL": "postgresql://gateway:gateway@127.0.0.1:5432/gateway_auth_test",
    "PROJECT_DATABASE_URL": "postgresql://gateway:gateway@127.0.0.1:5432/gateway_project_test",
    "ANALYTICS_DATABASE_URL":
        "postgresql://gateway:gateway@127.0.0.1:5432/gateway_analytics_test",
    "LOGS_DATABASE_URL": "postgresql://gateway:gateway@127.0.0.1:5432/gateway_logs_test",
    # the gateway's status listener on any free port (tests build many gateways)
    "GATEWAY_STATUS_PORT": "0",
    # no drain window after SIGTERM (the drain test sets its own)
    "SHUTDOWN_DRAIN_S": "0",
    # Many tests share 127.0.0.1: the limiter's own tests set small limits explicitly.
    "RATE_LIMIT_IP": "1000000",
    "RATE_LIMIT_USER": "1000000",
    "RATE_LIMIT_API_KEY": "1000000",
    # the e2e modules' shared users create many projects; the hardening tests set the caps
    "MAX_PROJECTS_PER_USER": "100000",
    "MAX_KEYS_PER_PROJECT": "100000",
    # cheap password hashes: the suite registers and logs in thousands of times on two cores
    # (production refuses these; tests/unit/test_settings.py)
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_KIB": "1024",
    "ARGON2_PARALLELISM": "1",
}
for _name, _value in TEST_ENV.items():
    os.environ.setdefault(_name, _value)


def _fresh_database(variable: str) -> str:
    """The database named by the environment `variable`, created anew for this session (its
    service migrates it at start)."""
    import asyncio

    from tests.support import recreate_database

    url = os.environ[variable]
    asyncio.run(recreate_database(url))
    return url


@pytest.fixture(scope="session")
def auth_database_url() -> str:
    return _fresh_database("AUTH_DATABASE_URL")


@pytest.fixture(scope="session")
def project_database_url() -> str:
    return _fresh_database("PROJECT_DATABASE_URL")


@pytest.fixture(scope="session")
def analytics_database_url() -> str:
    return _fresh_database("ANALYTICS_DATABASE_URL")


@pytest.fixture(scope="session")
def logs_database_url() -> str:
    return _fresh_database("LOGS_DATABASE_URL")


@pytest.fixture(scope="session")
def mongo_test_db() -> str:
    """The tests' MongoDB database, dropped once per session: the local server scans a
    collection for every query, so entries of earlier runs would slow every run down."""
    import pymongo

    client = pymongo.MongoClient(os.environ["MONGO_URL"], serverSelectionTimeoutMS=10_000)
    client.drop_database(os.environ["MONGO_DB"])
    client.close()
    return os.environ["MONGO_DB"]


@pytest.fixture(scope="session")
def redis_test_db() -> str:
    """The tests' Redis databases (the limiter's instance and the cache's), emptied once per
    session (login throttle counters, cache entries...)."""
    import redis

    for variable in ("REDIS_URL", "CACHE_REDIS_URL"):
        client = redis.Redis.from_url(os.environ[variable])
        client.flushdb()
        client.close()
    return os.environ["REDIS_URL"]


@pytest.fixture(scope="session")
def backends(broker_vhost: str, auth_database_url: str, project_database_url: str,
             analytics_database_url: str, logs_database_url: str, redis_test_db: str,
             mongo_test_db: str) -> None:
    """Every server a stack of the five processes uses, made fresh once per session."""


@pytest.fixture(scope="session")
def broker_vhost() -> str:
    """A vhost of the tests' own, created anew for each session through the management API,
    so queues of earlier runs do not pile up."""
    try:
        recreate_vhost(TEST_VHOST)
    except urllib.error.URLError as exc:
        pytest.exit(f"RabbitMQ management API not reachable ({exc}); run `make infra` first",
                    returncode=3)
    return TEST_VHOST


@pytest.fixture
def collector():
    """An OTLP/HTTP receiver of the test's own (tests/otlp_receiver.py), stopped afterwards."""
    from tests.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()
