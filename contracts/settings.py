"""Settings from environment variables, validated once at start-up.

`APP_ENV` defaults to `production`, where every secret must be given: the insecure defaults
below exist only for the `development` profile that `make run` uses and for `test`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from argon2.profiles import RFC_9106_LOW_MEMORY as ARGON2_RFC_9106
from environs import Env, EnvError
from marshmallow import ValidationError
from marshmallow.validate import Length, OneOf, Range

from contracts.oauth_settings import (
    OAuthProviderSettings,
    OAuthSettingsError,
    read_oauth_providers,
)

AppEnv = Literal["development", "test", "production"]
LogStoreKind = Literal["postgresql", "mongodb"]
PoolMode = Literal["session", "transaction"]
_Choice = TypeVar("_Choice", bound=str)
APP_ENVS: tuple[AppEnv, ...] = get_args(AppEnv)
LOG_STORE_KINDS: tuple[LogStoreKind, ...] = get_args(LogStoreKind)
POOL_MODES: tuple[PoolMode, ...] = get_args(PoolMode)

DEV_SECRETS = {
    "ACCESS_TOKEN_SECRET": "dev-only-access-token-secret-0123456789abcdef",
    "ALERT_SECRET": "dev-only-alert-secret-0123456789",
    # base64 of 32 bytes, like every WEBHOOK_ENCRYPTION_KEY
    "WEBHOOK_ENCRYPTION_KEY": "ZGV2LW9ubHktd2ViaG9vay1zZWNyZXRzLWtleS0wMTI=",
}
# Svix's schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (eight attempts in about 28 h)
DEFAULT_WEBHOOK_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,36000"


class SettingsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Settings:
    app_env: AppEnv
    log_level: str
    amqp_url: str
    redis_url: str
    cache_redis_url: str
    # Cluster or Sentinel instead of the URL's one server (contracts.redis_clients): each
    # a comma-separated host:port list, "" when unused
    redis_cluster_nodes: str
    redis_sentinels: str
    redis_sentinel_master: str
    cache_redis_cluster_nodes: str
    cache_redis_sentinels: str
    cache_redis_sentinel_master: str
    cache_max_body_bytes: int
    cache_project_budget_bytes: int
    mongo_url: str
    mongo_db: str
    auth_database_url: str
    project_database_url: str
    analytics_database_url: str
    access_token_secret: str
    alert_secret: str
    app_url: str
    gateway_host: str
    gateway_port: int
    gateway_workers: int
    gateway_status_port: int
    service_host: str
    service_ports: Mapping[str, int]
    rpc_timeout_ms: int
    health_timeout_ms: int
    rpc_prefetch: int
    max_body_bytes: int
    event_buffer_max: int
    event_max_retries: int
    shutdown_grace_s: float
    smtp_url: str
    mail_from: str
    login_max_failures_per_account: int
    login_max_failures_per_ip: int
    login_failure_window_s: int
    upstream_allow_private: tuple[str, ...]
    rate_limit_api_key: int
    rate_limit_user: int
    rate_limit_ip: int
    rate_limit_fail_closed: bool
    trusted_proxies: tuple[str, ...]
    upstream_connect_timeout_s: float
    upstream_timeout_s: float
    upstream_max_header_bytes: int
    upstream_max_header_fields: int
    gateway_id: str
    log_store: LogStoreKind
    logs_database_url: str
    log_partitions_ahead_days: int
    log_retention_days: int
    log_sweep_interval_s: float
    analytics_ledger_hours: int
    alert_interval_ms: int
    alert_event_store: LogStoreKind
    max_projects_per_user: int
    max_keys_per_project: int
    # webhooks (project_svc): sealing key of their secrets (and older keys still opened),
    # seconds between attempts, when an endpoint failing everything is disabled
    max_webhooks_per_project: int
    webhook_encryption_key: str
    webhook_encryption_old_keys: tuple[str, ...]
    webhook_retry_schedule: tuple[float, ...]
    webhook_disable_after_s: int
    webhook_timeout_s: float
    argon2_time_cost: int
    argon2_memory_kib: int
    argon2_parallelism: int
    password_hash_threads: int
    monitor_max_events_per_s: int
    monitor_max_sockets_per_user: int
    check_answers: bool
    shutdown_drain_s: float
    monitor_allow_polling: bool
    database_pool_mode: PoolMode
    auth_migration_url: str
    project_migration_url: str
    analytics_migration_url: str
    logs_migration_url: str
    # spans over OTLP/HTTP (contracts.spans): the collector's base URL, "" for none
    otel_exporter_otlp_endpoint: str
    otel_service_name: str
    # sign-in providers (auth_svc.oauth; contracts.oauth_settings) and where a browser goes
    # once signed in (a one-time code in the fragment)
    oauth_providers: tuple[OAuthProviderSettings, ...] = ()
    oauth_success_url: str = ""

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"


# What each process reads of the environment (the variables of its settings); a process
# leaves every other variable unread, so one it does not use can neither stop it nor be
# taken by it. tests/unit/test_settings.py holds each package to its list.
Process = Literal["gateway", "auth", "project", "analytics", "logging"]
COMMON = frozenset({
    "APP_ENV", "LOG_LEVEL", "AMQP_URL", "SERVICE_HOST", "RPC_TIMEOUT_MS", "RPC_PREFETCH",
    "EVENT_BUFFER_MAX", "EVENT_MAX_RETRIES", "SHUTDOWN_GRACE_S", "SHUTDOWN_DRAIN_S", "APP_URL",
    "GATEWAY_ID", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME",
})
DATABASE = frozenset({"DATABASE_POOL_MODE"})
# where the limiter/state Redis is: one server, a Cluster or a Sentinel-watched primary
REDIS = frozenset({"REDIS_URL", "REDIS_CLUSTER_NODES", "REDIS_SENTINELS",
                   "REDIS_SENTINEL_MASTER"})
CACHE_REDIS = frozenset({"CACHE_REDIS_URL", "CACHE_REDIS_CLUSTER_NODES",
                         "CACHE_REDIS_SENTINELS", "CACHE_REDIS_SENTINEL_MASTER"})
READS: dict[Process, frozenset[str]] = {
    "gateway": COMMON | REDIS | CACHE_REDIS | {
        "CACHE_MAX_BODY_BYTES", "CACHE_PROJECT_BUDGET_BYTES",
        "ACCESS_TOKEN_SECRET", "ALERT_SECRET", "GATEWAY_HOST", "GATEWAY_PORT",
        "GATEWAY_WORKERS", "GATEWAY_STATUS_PORT", "HEALTH_TIMEOUT_MS", "MAX_BODY_BYTES",
        "UPSTREAM_ALLOW_PRIVATE", "RATE_LIMIT_API_KEY", "RATE_LIMIT_USER", "RATE_LIMIT_IP",
        "RATE_LIMIT_FAIL_CLOSED", "TRUSTED_PROXIES", "UPSTREAM_CONNECT_TIMEOUT_S",
        "UPSTREAM_TIMEOUT_S", "UPSTREAM_MAX_HEADER_BYTES", "UPSTREAM_MAX_HEADER_FIELDS",
        "MONITOR_MAX_EVENTS_PER_S", "MONITOR_MAX_SOCKETS_PER_USER", "MONITOR_ALLOW_POLLING",
        "CHECK_ANSWERS", "OAUTH_SUCCESS_URL"},  # its codes are bound to a browser when ours
    "auth": COMMON | DATABASE | REDIS | {
        "AUTH_HTTP_PORT", "AUTH_DATABASE_URL", "AUTH_MIGRATION_URL",
        "ACCESS_TOKEN_SECRET", "SMTP_URL",
        "MAIL_FROM", "LOGIN_MAX_FAILURES_PER_ACCOUNT", "LOGIN_MAX_FAILURES_PER_IP",
        "LOGIN_FAILURE_WINDOW_S", "ARGON2_TIME_COST", "ARGON2_MEMORY_KIB",
        "ARGON2_PARALLELISM", "PASSWORD_HASH_THREADS", "OAUTH_PROVIDERS", "OAUTH_SUCCESS_URL",
        "OAUTH_*"},
    "project": COMMON | DATABASE | {
        "PROJECT_HTTP_PORT", "PROJECT_DATABASE_URL", "PROJECT_MIGRATION_URL",
        "UPSTREAM_ALLOW_PRIVATE", "GATEWAY_PORT",
        "MAX_PROJECTS_PER_USER", "MAX_KEYS_PER_PROJECT", "MAX_WEBHOOKS_PER_PROJECT",
        "WEBHOOK_ENCRYPTION_KEY", "WEBHOOK_ENCRYPTION_OLD_KEYS", "WEBHOOK_RETRY_SCHEDULE",
        "WEBHOOK_DISABLE_AFTER_S", "WEBHOOK_TIMEOUT_S"},
    "analytics": COMMON | DATABASE | REDIS | {
        "ANALYTICS_HTTP_PORT", "ANALYTICS_DATABASE_URL", "ANALYTICS_MIGRATION_URL",
        "MONGO_URL", "MONGO_DB",
        "ANALYTICS_LEDGER_HOURS", "ALERT_INTERVAL_MS", "ALERT_EVENT_STORE"},
    "logging": COMMON | DATABASE | {
        "LOGGING_HTTP_PORT", "LOG_STORE", "LOGS_DATABASE_URL", "LOGS_MIGRATION_URL",
        "LOG_PARTITIONS_AHEAD_DAYS",
        "LOG_RETENTION_DAYS", "LOG_SWEEP_INTERVAL_S", "MONGO_URL", "MONGO_DB",
        "ACCESS_TOKEN_SECRET"},
}


def load_settings(process: Process | None = None) -> Settings:
    """Read and validate the environment: every variable, or only those `process` reads (the
    others keep their defaults, unread). Raise SettingsError listing every problem."""
    env = Env(eager=False)
    return _read(env if process is None else _Only(env, READS[process]))


class _Only(Env):
    """An Env that reads only `names`; any other variable is its default, never looked at."""

    def __init__(self, env: Env, names: frozenset[str]) -> None:
        self.__dict__.update(env.__dict__)
        self._names = names
        # `PREFIX_*`: every variable of that prefix (per-provider OAuth settings)
        self._prefixes = tuple(name[:-1] for name in names if name.endswith("*"))
        for kind in ("str", "int", "float", "bool", "list"):
            setattr(self, kind, self._scoped(getattr(env, kind)))

    def _scoped(self, read: Any) -> Any:
        def scoped(name: str, *args: Any, **kwargs: Any) -> Any:
            if name in self._names or (self._prefixes and name.startswith(self._prefixes)):
                return read(name, *args, **kwargs)
            return args[0] if args else kwargs.get("default")

        return scoped


def _read(env: Env) -> Settings:
    # An unknown APP_ENV reads the rest as a non-production profile would, so that seal()
    # reports that one mistake rather than every production secret as missing too.
    app_env = _choice(env, "APP_ENV", "production", APP_ENVS, stand_in="development")
    port = Range(min=1, max=65535)
    settings = Settings(
        app_env=app_env,
        log_level=env.str("LOG_LEVEL", "INFO", validate=OneOf(
            ["DEBUG", "INFO", "WARNING", "ERROR"])),
        # one node, or several of one cluster separated by commas (contracts.amqp)
        amqp_url=env.str("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/",
                         validate=_amqp_urls),
        redis_url=env.str("REDIS_URL", "redis://127.0.0.1:6379/0"),
        # the response cache's own Redis instance, with maxmemory and an LRU policy
        cache_redis_url=env.str("CACHE_REDIS_URL", "redis://127.0.0.1:6380/0"),
        redis_cluster_nodes=env.str("REDIS_CLUSTER_NODES", ""),
        redis_sentinels=env.str("REDIS_SENTINELS", ""),
        redis_sentinel_master=env.str("REDIS_SENTINEL_MASTER", "mymaster"),
        cache_redis_cluster_nodes=env.str("CACHE_REDIS_CLUSTER_NODES", ""),
        cache_redis_sentinels=env.str("CACHE_REDIS_SENTINELS", ""),
        cache_redis_sentinel_master=env.str("CACHE_REDIS_SENTINEL_MASTER", "mymaster"),
        cache_max_body_bytes=env.int("CACHE_MAX_BODY_BYTES", 1024 * 1024,
                                     validate=Range(min=1, max=64 * 1024 * 1024)),
        cache_project_budget_bytes=env.int("CACHE_PROJECT_BUDGET_BYTES", 64 * 1024 * 1024,
                                           validate=Range(min=1024)),
        mongo_url=env.str("MONGO_URL", "mongodb://127.0.0.1:27017"),
        mongo_db=env.str("MONGO_DB", "gateway"),
        auth_database_url=env.str(
            "AUTH_DATABASE_URL", "postgresql://gateway:gateway@127.0.0.1:5432/gateway_auth"),
        project_database_url=env.str(
            "PROJECT_DATABASE_URL", "postgresql://gateway:gateway@127.0.0.1:5432/gateway_project"),
        analytics_database_url=env.str(
            "ANALYTICS_DATABASE_URL",
            "postgresql://gateway:gateway@127.0.0.1:5432/gateway_analytics"),
        access_token_secret=_secret(env, app_env, "ACCESS_TOKEN_SECRET", min_length=32),
        alert_secret=_secret(env, app_env, "ALERT_SECRET", min_length=16),
        app_url=env.str("APP_URL", "http://localhost:3000"),
        gateway_host=env.str("GATEWAY_HOST", "0.0.0.0"),
        gateway_port=env.int("GATEWAY_PORT", 3000, validate=port),
        # Processes serving the gateway port together (SO_REUSEPORT); limits, cache and key
        # revocation are shared through Redis and the broker, so they stay exact.
        gateway_workers=env.int("GATEWAY_WORKERS", 1, validate=Range(min=1, max=64)),
        # GET /metrics of the gateway, on SERVICE_HOST (not the public port: docs/api.md 10)
        # (0: any free port, for tests)
        gateway_status_port=env.int("GATEWAY_STATUS_PORT", 4000,
                                    validate=Range(min=0, max=65535)),
        service_host=env.str("SERVICE_HOST", "127.0.0.1"),
        service_ports={
            "auth": env.int("AUTH_HTTP_PORT", 4001, validate=port),
            "project": env.int("PROJECT_HTTP_PORT", 4002, validate=port),
            "analytics": env.int("ANALYTICS_HTTP_PORT", 4003, validate=port),
            "logging": env.int("LOGGING_HTTP_PORT", 4004, validate=port),
        },
        rpc_timeout_ms=env.int("RPC_TIMEOUT_MS", 5000, validate=Range(min=50, max=120_000)),
        health_timeout_ms=env.int("HEALTH_TIMEOUT_MS", 1500, validate=Range(min=50, max=60_000)),
        rpc_prefetch=env.int("RPC_PREFETCH", 64, validate=Range(min=1, max=10_000)),
        max_body_bytes=env.int("MAX_BODY_BYTES", 1024 * 1024, validate=Range(min=1024)),
        event_buffer_max=env.int("EVENT_BUFFER_MAX", 100_000, validate=Range(min=10)),
        event_max_retries=env.int("EVENT_MAX_RETRIES", 5, validate=Range(min=0, max=100)),
        shutdown_grace_s=env.float("SHUTDOWN_GRACE_S", 10.0, validate=Range(min=0, max=300)),
        # Empty: no mailer (registration then answers without "Verification email sent").
        smtp_url=env.str("SMTP_URL", "", validate=_smtp_url),
        mail_from=env.str("MAIL_FROM", "Gateway Platform <no-reply@localhost>"),
        login_max_failures_per_account=env.int(
            "LOGIN_MAX_FAILURES_PER_ACCOUNT", 10, validate=Range(min=1)),
        # Higher than per account: many people may share one address behind a NAT.
        login_max_failures_per_ip=env.int("LOGIN_MAX_FAILURES_PER_IP", 50, validate=Range(min=1)),
        login_failure_window_s=env.int("LOGIN_FAILURE_WINDOW_S", 900, validate=Range(min=1)),
        # Upstream targets an operator allows despite the SSRF rules: CIDRs, hosts, or `*`.
        upstream_allow_private=tuple(env.list("UPSTREAM_ALLOW_PRIVATE", [])),
        # Requests per 60 s by identity tier (docs/api.md section 13.1).
        rate_limit_api_key=env.int("RATE_LIMIT_API_KEY", 1000, validate=Range(min=1)),
        rate_limit_user=env.int("RATE_LIMIT_USER", 100, validate=Range(min=1)),
        rate_limit_ip=env.int("RATE_LIMIT_IP", 20, validate=Range(min=1)),
        # When Redis is unreachable: serve without limits (default) or refuse with 503.
        rate_limit_fail_closed=env.bool("RATE_LIMIT_FAIL_CLOSED", False),
        # Peers whose X-Forwarded-For is believed (CIDRs); everyone else is the socket peer.
        trusted_proxies=tuple(env.list("TRUSTED_PROXIES", [])),
        upstream_connect_timeout_s=env.float("UPSTREAM_CONNECT_TIMEOUT_S", 5.0,
                                             validate=Range(min=0.1, max=120)),
        upstream_timeout_s=env.float("UPSTREAM_TIMEOUT_S", 30.0, validate=Range(min=0.1,
                                                                                max=3600)),
        # An upstream answer's head beyond either bound is a broken answer (502): an upstream
        # cannot make the gateway hold megabytes of header lines per request.
        upstream_max_header_bytes=env.int("UPSTREAM_MAX_HEADER_BYTES", 64 * 1024,
                                          validate=Range(min=1024, max=16 * 1024 * 1024)),
        upstream_max_header_fields=env.int("UPSTREAM_MAX_HEADER_FIELDS", 100,
                                           validate=Range(min=1, max=10_000)),
        # This deployment's name in `Via` (RFC 9110 section 7.6.3), the same on every gateway
        # of it: a request arriving with a `Via` entry naming it has come round in a loop.
        gateway_id=env.str("GATEWAY_ID", "", validate=_token),
        # Where log entries live: PostgreSQL (day partitions; the default) or MongoDB (for
        # deployments that run a real one; the local FerretDB cannot index these queries).
        log_store=_choice(env, "LOG_STORE", "postgresql", LOG_STORE_KINDS),
        logs_database_url=env.str(
            "LOGS_DATABASE_URL", "postgresql://gateway:gateway@127.0.0.1:5432/gateway_logs"),
        # day partitions the logging service keeps created ahead of today
        log_partitions_ahead_days=env.int("LOG_PARTITIONS_AHEAD_DAYS", 7,
                                          validate=Range(min=1, max=366)),
        # Log entries older than this are deleted by the logging service's sweeper.
        log_retention_days=env.int("LOG_RETENTION_DAYS", 30, validate=Range(min=1, max=3650)),
        log_sweep_interval_s=env.float("LOG_SWEEP_INTERVAL_S", 3600.0,
                                       validate=Range(min=1, max=86_400)),
        # How long the analytics service remembers a folded request id: a copy of the event
        # arriving later (a message requeued while no consumer ran) would count again.
        analytics_ledger_hours=env.int("ANALYTICS_LEDGER_HOURS", 24,
                                       validate=Range(min=1, max=24 * 30)),
        # How often the alert engine evaluates every enabled rule (docs/api.md section 9.1).
        alert_interval_ms=env.int("ALERT_INTERVAL_MS", 30_000,
                                  validate=Range(min=100, max=3_600_000)),
        # Where alert events live: PostgreSQL (the analytics database; the default) or MongoDB
        # (beside the alert rules; the local FerretDB cannot index the events list).
        alert_event_store=_choice(env, "ALERT_EVENT_STORE", "postgresql", LOG_STORE_KINDS),
        # Caps against minting identities to escape rate limits (docs/api.md section 13.1).
        max_projects_per_user=env.int("MAX_PROJECTS_PER_USER", 50, validate=Range(min=1)),
        max_keys_per_project=env.int("MAX_KEYS_PER_PROJECT", 20, validate=Range(min=1)),
        max_webhooks_per_project=env.int("MAX_WEBHOOKS_PER_PROJECT", 10,
                                         validate=Range(min=1, max=1000)),
        webhook_encryption_key=_secret(env, app_env, "WEBHOOK_ENCRYPTION_KEY", min_length=44,
                                       validate=_encryption_key),
        webhook_encryption_old_keys=tuple(
            key.strip() for key in (env.str("WEBHOOK_ENCRYPTION_OLD_KEYS", "",
                                            validate=_encryption_keys) or "").split(",")
            if key.strip()),
        # (a value refused here is reported at seal(); the default stands in meanwhile)
        webhook_retry_schedule=retry_schedule(env.str(
            "WEBHOOK_RETRY_SCHEDULE", DEFAULT_WEBHOOK_RETRY_SCHEDULE,
            validate=_retry_schedule) or DEFAULT_WEBHOOK_RETRY_SCHEDULE),
        webhook_disable_after_s=env.int("WEBHOOK_DISABLE_AFTER_S", 5 * 86400,
                                        validate=Range(min=1)),
        webhook_timeout_s=env.float("WEBHOOK_TIMEOUT_S", 10.0, validate=Range(min=0.1, max=60)),
        # argon2id cost: RFC 9106's second recommended option (argon2-cffi's defaults). The
        # test profile lowers it (the suite registers and logs in thousands of times on two
        # cores); production refuses anything weaker than the defaults.
        argon2_time_cost=env.int("ARGON2_TIME_COST", ARGON2_RFC_9106.time_cost,
                                 validate=Range(min=1, max=100)),
        argon2_memory_kib=env.int("ARGON2_MEMORY_KIB", ARGON2_RFC_9106.memory_cost,
                                  validate=Range(min=8, max=4 * 1024 * 1024)),
        argon2_parallelism=env.int("ARGON2_PARALLELISM", ARGON2_RFC_9106.parallelism,
                                   validate=Range(min=1, max=64)),
        # argon2 hashes computed at once by one auth process: each holds ARGON2_MEMORY_KIB
        # (64 MiB by default), so this bounds the process's memory under a login burst (a
        # pod's memory limit must cover it: deploy/kubernetes); the rest wait their turn
        password_hash_threads=env.int("PASSWORD_HASH_THREADS", 2,
                                      validate=Range(min=1, max=64)),
        # Live monitor (docs/api.md section 11): log events per socket per second (the rest are
        # dropped and counted), and sockets per user across all gateways.
        monitor_max_events_per_s=env.int("MONITOR_MAX_EVENTS_PER_S", 50,
                                         validate=Range(min=1, max=10_000)),
        monitor_max_sockets_per_user=env.int("MONITOR_MAX_SOCKETS_PER_USER", 10,
                                             validate=Range(min=1, max=1000)),
        # every service answer checked against its route's declared answer type before it
        # leaves the gateway (an undeclared field is a 500, never a leak); on in development
        # and tests, where it makes every end-to-end test a contract test
        check_answers=env.bool("CHECK_ANSWERS", app_env != "production"),
        # After SIGTERM: seconds the process still serves new connections while /readyz
        # answers 503, so a load balancer stops sending before the listener closes.
        shutdown_drain_s=env.float("SHUTDOWN_DRAIN_S", 5.0, validate=Range(min=0, max=300)),
        # Socket.IO long-polling needs every request of a session on one process: only
        # behind a sticky load balancer. Off: websocket only.
        monitor_allow_polling=env.bool("MONITOR_ALLOW_POLLING", False),
        # `transaction` behind PgBouncer's transaction pooling: no prepared statement cache,
        # migrations under a transaction-scoped lock (or over *_MIGRATION_URL).
        database_pool_mode=_choice(env, "DATABASE_POOL_MODE", "session", POOL_MODES),
        # a direct URL (not through a pooler) for each service's migrations; empty: the
        # service's own DATABASE_URL
        auth_migration_url=env.str("AUTH_MIGRATION_URL", ""),
        project_migration_url=env.str("PROJECT_MIGRATION_URL", ""),
        analytics_migration_url=env.str("ANALYTICS_MIGRATION_URL", ""),
        logs_migration_url=env.str("LOGS_MIGRATION_URL", ""),
        # Spans exported with the OpenTelemetry SDK when set (the OTLP/HTTP base URL, e.g.
        # http://collector:4318); empty: no span is recorded and no SDK object exists.
        otel_exporter_otlp_endpoint=env.str("OTEL_EXPORTER_OTLP_ENDPOINT", "",
                                            validate=_otlp_endpoint),
        # the spans' service.name; empty: the process's own name (gateway, auth-service...)
        otel_service_name=env.str("OTEL_SERVICE_NAME", "", validate=Length(max=200)),
    )
    if not settings.gateway_id:
        settings = replace(settings, gateway_id=default_gateway_id(settings.app_url))
    try:
        oauth_providers = read_oauth_providers(env, production=app_env == "production")
    except OAuthSettingsError as exc:
        oauth_problem: str | None = str(exc)
        oauth_providers = ()
    else:
        oauth_problem = None
    success_url = env.str("OAUTH_SUCCESS_URL", "", validate=_success_url) or \
        f"{settings.app_url.rstrip('/')}/console/"
    settings = replace(settings, oauth_providers=oauth_providers, oauth_success_url=success_url)
    try:
        env.seal()
    except EnvError as exc:
        raise SettingsError(f"invalid configuration: {exc}") from None
    if oauth_problem is not None:
        raise SettingsError(f"invalid configuration: {oauth_problem}")
    if app_env == "production" and (
            settings.argon2_time_cost < ARGON2_RFC_9106.time_cost
            or settings.argon2_memory_kib < ARGON2_RFC_9106.memory_cost):
        raise SettingsError(
            "ARGON2_TIME_COST / ARGON2_MEMORY_KIB are below RFC 9106's recommendation "
            f"({ARGON2_RFC_9106.time_cost} / {ARGON2_RFC_9106.memory_cost}); cheaper password "
            "hashes are for the test profile only")
    return settings


def _choice(env: Env, name: str, default: _Choice, choices: tuple[_Choice, ...], *,
            stand_in: _Choice | None = None) -> _Choice:
    """The variable as one of `choices` (a Literal's values), so the field keeps its Literal
    type. A value outside them is reported at seal(); until then `stand_in` (or the default)
    takes its place."""
    value = env.str(name, default, validate=OneOf(choices))
    fallback = default if stand_in is None else stand_in
    return next((choice for choice in choices if choice == value), fallback)


def default_gateway_id(app_url: str) -> str:
    """A name that is the same for every gateway of one deployment (they share APP_URL) and
    says nothing about it: the first 12 hex digits of APP_URL's SHA-256."""
    return "gw-" + hashlib.sha256(app_url.encode()).hexdigest()[:12]


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")


def _token(value: str) -> None:
    """An RFC 9110 token (what `Via` allows as a pseudonym), or empty for the default."""
    if value and not _TOKEN.match(value):
        raise ValidationError("GATEWAY_ID must be 1 to 64 token characters (letters, digits, "
                              "and !#$%&'*+.^_`|~-)")


def _amqp_urls(value: str) -> None:
    from contracts.amqp import broker_urls  # aio-pika only where the URL is read

    try:
        broker_urls(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _otlp_endpoint(value: str) -> None:
    """A URL the exporter can post to: refused at start, not at the first export."""
    if value and not _is_http_base_url(value):
        raise ValidationError(
            "OTEL_EXPORTER_OTLP_ENDPOINT must be the collector's OTLP/HTTP base URL, "
            "http(s)://host[:port][/path] (e.g. http://127.0.0.1:4318), or empty for none")


def _is_http_base_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number from 0 to 65535 raises
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) \
        and not parts.query and not parts.fragment


def _smtp_url(value: str) -> None:
    if value and not value.startswith(("smtp://", "smtps://")):
        raise ValidationError("SMTP_URL must be smtp://[user:pass@]host[:port] or smtps://...")


def encryption_key(text: str) -> bytes:
    """A key of WEBHOOK_ENCRYPTION_KEY's form: base64 of exactly 32 bytes; ValueError if not."""
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("must be base64 of 32 bytes") from None
    if len(key) != 32:
        raise ValueError(f"must be base64 of 32 bytes (it has {len(key)})")
    return key


def _encryption_key(value: str, name: str = "WEBHOOK_ENCRYPTION_KEY") -> None:
    try:
        encryption_key(value)
    except ValueError as exc:
        raise ValidationError(f"{name} {exc}") from None


def _encryption_keys(value: str) -> None:
    for key in value.split(","):
        if key.strip():
            _encryption_key(key.strip(), "each of WEBHOOK_ENCRYPTION_OLD_KEYS")


def retry_schedule(text: str) -> tuple[float, ...]:
    """WEBHOOK_RETRY_SCHEDULE: positive seconds (at most 7 days each), comma-separated."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError("must list at least one delay in seconds")
    delays = []
    for part in parts:
        try:
            delay = float(part)
        except ValueError:
            raise ValueError(f"{part!r} is not a number of seconds") from None
        if not 0 < delay <= 7 * 86400:
            raise ValueError(f"{part} must be more than 0 and at most 7 days")
        delays.append(delay)
    return tuple(delays)


def _success_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ValidationError("OAUTH_SUCCESS_URL must be an http(s) URL without a fragment "
                              "(the one-time code goes there)")


def _retry_schedule(value: str) -> None:
    try:
        retry_schedule(value)
    except ValueError as exc:
        raise ValidationError(f"WEBHOOK_RETRY_SCHEDULE {exc}") from None


def _secret(env: Env, app_env: str, name: str, *, min_length: int,
            validate: Callable[[str], None] | None = None) -> str:
    if isinstance(env, _Only) and name not in env._names:
        return ""  # a process that does not use this secret needs none
    if app_env == "production":
        value = env.str(name, None)
        if value is None:
            # Reported at seal(); returning a placeholder keeps the message list complete.
            env.str(name, validate=Length(min=min_length))
            return ""
        if value in DEV_SECRETS.values():
            raise SettingsError(f"{name} is a development default; set a real secret")
        env.str(name, validate=_checks(Length(min=min_length), validate))
        return value
    return env.str(name, DEV_SECRETS[name], validate=_checks(Length(min=min_length), validate))


def _checks(*validators: Callable[[str], object] | None) -> list[Callable[[str], object]]:
    return [validator for validator in validators if validator is not None]
