import base64
import os

import pytest

from contracts.settings import DEV_SECRETS, SettingsError, load_settings

A_WEBHOOK_KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("APP_ENV", "ACCESS_TOKEN_SECRET", "ALERT_SECRET", "GATEWAY_PORT",
                 "ARGON2_TIME_COST", "ARGON2_MEMORY_KIB", "ARGON2_PARALLELISM",
                 "WEBHOOK_ENCRYPTION_KEY", "WEBHOOK_ENCRYPTION_OLD_KEYS",
                 "WEBHOOK_RETRY_SCHEDULE"):
        monkeypatch.delenv(name, raising=False)


def test_production_is_the_default_and_refuses_to_start_without_secrets():
    with pytest.raises(SettingsError, match="ACCESS_TOKEN_SECRET"):
        load_settings()


def test_production_refuses_the_development_secrets(monkeypatch):
    monkeypatch.setenv("ACCESS_TOKEN_SECRET", DEV_SECRETS["ACCESS_TOKEN_SECRET"])
    monkeypatch.setenv("ALERT_SECRET", "a-real-alert-secret-value")
    with pytest.raises(SettingsError, match="development default"):
        load_settings()


def test_production_refuses_short_secrets(monkeypatch):
    monkeypatch.setenv("ACCESS_TOKEN_SECRET", "short")
    monkeypatch.setenv("ALERT_SECRET", "a-real-alert-secret-value")
    with pytest.raises(SettingsError, match="ACCESS_TOKEN_SECRET"):
        load_settings()


def test_production_with_real_secrets(monkeypatch):
    monkeypatch.setenv("ACCESS_TOKEN_SECRET", "x" * 40)
    monkeypatch.setenv("ALERT_SECRET", "y" * 20)
    monkeypatch.setenv("WEBHOOK_ENCRYPTION_KEY", A_WEBHOOK_KEY)
    settings = load_settings()
    assert settings.is_production and settings.access_token_secret == "x" * 40


def test_production_refuses_cheap_password_hashes(monkeypatch):
    monkeypatch.setenv("ACCESS_TOKEN_SECRET", "x" * 40)
    monkeypatch.setenv("ALERT_SECRET", "y" * 20)
    monkeypatch.setenv("WEBHOOK_ENCRYPTION_KEY", A_WEBHOOK_KEY)
    settings = load_settings()
    assert (settings.argon2_time_cost, settings.argon2_memory_kib) == (3, 65536)
    for name, cheap in (("ARGON2_TIME_COST", "1"), ("ARGON2_MEMORY_KIB", "1024")):
        monkeypatch.setenv(name, cheap)
        with pytest.raises(SettingsError, match="RFC 9106"):
            load_settings()
        monkeypatch.setenv("APP_ENV", "test")
        assert getattr(load_settings(), name.lower()) == int(cheap)
        monkeypatch.delenv("APP_ENV")
        monkeypatch.delenv(name)


def test_development_has_defaults_for_everything(monkeypatch):
    monkeypatch.setenv("APP_ENV", "development")
    settings = load_settings()
    assert settings.gateway_port == 3000
    assert settings.access_token_secret == DEV_SECRETS["ACCESS_TOKEN_SECRET"]
    assert settings.max_body_bytes == 1024 * 1024


def test_environment_overrides_and_is_validated(monkeypatch):
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("GATEWAY_PORT", "3100")
    assert load_settings().gateway_port == 3100
    monkeypatch.setenv("GATEWAY_PORT", "99999")
    with pytest.raises(SettingsError, match="GATEWAY_PORT"):
        load_settings()


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:4318", "https://collector.example/otlp/"])
def test_an_otlp_endpoint_is_a_base_url(monkeypatch, endpoint):
    monkeypatch.setenv("APP_ENV", "test")
    assert load_settings().otel_exporter_otlp_endpoint == ""  # the default: no export
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    for process in ("gateway", "auth", "project", "analytics", "logging"):
        assert load_settings(process).otel_exporter_otlp_endpoint == endpoint  # type: ignore[arg-type]


@pytest.mark.parametrize("endpoint", ["collector:4318", "grpc://collector:4317", "http://",
                                      "http://collector:99999", "http://collector:port",
                                      "http://collector:4318/?x=1", "http://c:4318/#v1"])
def test_a_malformed_otlp_endpoint_stops_the_process_at_start(monkeypatch, endpoint):
    monkeypatch.setenv("APP_ENV", "test")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_ENDPOINT must be the "
                                            "collector's OTLP/HTTP base URL"):
        load_settings("gateway")


def test_unknown_app_env_is_refused(monkeypatch):
    monkeypatch.setenv("APP_ENV", "staging")
    with pytest.raises(SettingsError, match="APP_ENV"):
        load_settings()


def test_gateway_id_defaults_to_a_hash_of_app_url_and_must_be_a_token(monkeypatch):
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.delenv("GATEWAY_ID", raising=False)
    monkeypatch.setenv("APP_URL", "https://api.example.com")
    default = load_settings().gateway_id
    assert default.startswith("gw-") and "example" not in default
    monkeypatch.setenv("GATEWAY_ID", "edge-eu-1")
    assert load_settings().gateway_id == "edge-eu-1"
    for bad in ("two words", "a,b", "x" * 65):
        monkeypatch.setenv("GATEWAY_ID", bad)
        with pytest.raises(SettingsError, match="GATEWAY_ID"):
            load_settings()


# --- each process reads only its own settings -----------------------------------------------

PACKAGES: dict[str, str] = {"gateway": "gateway", "auth": "auth_svc", "project": "project_svc",
                            "analytics": "analytics_svc", "logging": "logging_svc"}


def _fields_read_in(package: str) -> set[str]:
    """The Settings fields a package's code reads (`settings.x`, `self._settings.x`, ...)."""
    import re
    from dataclasses import fields
    from pathlib import Path

    from contracts.settings import Settings

    names = {f.name for f in fields(Settings)} | {"is_production"}
    found: set[str] = set()
    for source in (Path(__file__).parents[2] / package).rglob("*.py"):
        found |= {m for m in re.findall(r"settings\.(\w+)", source.read_text()) if m in names}
    return found


def _variable_of(field: str, process: str) -> str:
    return {"service_ports": f"{process.upper()}_HTTP_PORT",
            "is_production": "APP_ENV"}.get(field, field.upper())


@pytest.mark.parametrize("process", list(PACKAGES))
def test_a_process_reads_only_the_settings_it_declares(process: str):
    from contracts.settings import READS

    wanted = {_variable_of(f, process) for f in _fields_read_in(PACKAGES[process])}
    # the runtime (contracts) reads the common ones for every service
    assert wanted - READS[process] == set(), process  # type: ignore[index]


def test_a_bad_setting_stops_only_the_process_that_reads_it(monkeypatch):
    monkeypatch.setenv("APP_ENV", "test")
    monkeypatch.setenv("LOG_STORE", "oracle")
    monkeypatch.setenv("RATE_LIMIT_IP", "many")
    assert load_settings("auth").log_store == "postgresql"  # unread: the default
    with pytest.raises(SettingsError, match="LOG_STORE") as refused:
        load_settings("logging")
    assert "RATE_LIMIT_IP" not in str(refused.value)
    with pytest.raises(SettingsError, match="RATE_LIMIT_IP"):
        load_settings("gateway")


def test_production_secrets_are_required_only_where_they_are_used():
    # no secret set, production: the services that hold none start, the others refuse
    assert load_settings("analytics").is_production
    with pytest.raises(SettingsError, match="WEBHOOK_ENCRYPTION_KEY"):
        load_settings("project")
    for process in ("gateway", "auth", "logging"):
        with pytest.raises(SettingsError, match="ACCESS_TOKEN_SECRET"):
            load_settings(process)  # type: ignore[arg-type]


def test_webhook_secrets_need_a_real_key_in_production(monkeypatch):
    with pytest.raises(SettingsError, match="WEBHOOK_ENCRYPTION_KEY"):
        load_settings("project")
    monkeypatch.setenv("WEBHOOK_ENCRYPTION_KEY", DEV_SECRETS["WEBHOOK_ENCRYPTION_KEY"])
    with pytest.raises(SettingsError, match="development default"):
        load_settings("project")
    for bad in ("short", base64.b64encode(b"x" * 31).decode() + "====", "!" * 44):
        monkeypatch.setenv("WEBHOOK_ENCRYPTION_KEY", bad)
        with pytest.raises(SettingsError, match="WEBHOOK_ENCRYPTION_KEY"):
            load_settings("project")
    monkeypatch.setenv("WEBHOOK_ENCRYPTION_KEY", A_WEBHOOK_KEY)
    monkeypatch.setenv("WEBHOOK_ENCRYPTION_OLD_KEYS", "not-a-key")
    with pytest.raises(SettingsError, match="WEBHOOK_ENCRYPTION_OLD_KEYS"):
        load_settings("project")
    monkeypatch.setenv("WEBHOOK_ENCRYPTION_OLD_KEYS", f" {DEV_SECRETS['WEBHOOK_ENCRYPTION_KEY']} ,")
    settings = load_settings("project")
    assert settings.webhook_encryption_key == A_WEBHOOK_KEY
    assert settings.webhook_encryption_old_keys == (DEV_SECRETS["WEBHOOK_ENCRYPTION_KEY"],)


def test_the_retry_schedule_is_seconds_and_refused_otherwise(monkeypatch):
    monkeypatch.setenv("APP_ENV", "test")
    assert load_settings("project").webhook_retry_schedule == (
        5, 300, 1800, 7200, 18000, 36000, 36000)
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "0.5, 1,2")
    assert load_settings("project").webhook_retry_schedule == (0.5, 1, 2)
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "1,soon")
    with pytest.raises(SettingsError, match="WEBHOOK_RETRY_SCHEDULE"):
        load_settings("project")
