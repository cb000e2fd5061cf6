from pathlib import Path

import pytest

from services.platform.settings import (
    DEFAULT_PORTS,
    DEV_TOKEN_AUDIENCE,
    DEV_TOKEN_ISSUER,
    Settings,
    SettingsError,
)

PRODUCTION = {
    "SAMHANDLING_ENVIRONMENT": "production",
    "SAMHANDLING_DATABASE_URL": "postgresql+asyncpg://db/samhandling",
    "SAMHANDLING_JWKS": "https://helseid.example/jwks",
    "SAMHANDLING_TOKEN_ISSUER": "https://helseid.example",
    "SAMHANDLING_TOKEN_AUDIENCE": "samhandling-api",
}


def problems_of(environ: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    return caught.value.problems


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env({})

    assert settings.environment == "development"
    assert not settings.production
    assert settings.data_dir == Path(".samhandling")
    assert settings.dev_keys_dir == Path(".samhandling") / "dev-keys"
    assert settings.database_url is None
    assert settings.database_pool_size == 10
    assert settings.bind_host == "127.0.0.1"
    assert dict(settings.ports) == {"access": 50051, "overview": 50052, "news2": 50053, "storage": 50054}
    assert dict(settings.addresses) == {name: f"127.0.0.1:{port}" for name, port in DEFAULT_PORTS.items()}
    assert settings.jwks is None
    assert settings.token_issuer == DEV_TOKEN_ISSUER
    assert settings.token_audience == DEV_TOKEN_AUDIENCE
    assert settings.tenants.tenant_of("972418013") == "1804"
    assert settings.tenants.tenant_of("935478715") == "3201"
    assert settings.max_payload_bytes == 1024 * 1024
    assert settings.call_timeout_seconds == 5.0
    assert settings.shutdown_grace_seconds == 10.0
    assert settings.database_check_interval_seconds == 2.0
    assert settings.log_level == "INFO"
    assert settings.max_concurrent_streams == 100
    assert settings.max_call_seconds == 30.0
    assert settings.rate_limit_per_second == 500.0
    assert settings.rate_limit_burst == 1000
    assert settings.max_streams_per_client == 32


def test_from_env_defaults_equal_the_dataclass_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"DATABASE_URL": "postgresql://x", "ENVIRONMENT": "bogus"}) == Settings()


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("ENVIRONMENT", "test", "environment", "test"),
        ("ENVIRONMENT", "  Test ", "environment", "test"),
        ("DATA_DIR", "/var/lib/samhandling", "data_dir", Path("/var/lib/samhandling")),
        ("DATABASE_URL", "postgresql+asyncpg://u@db/s", "database_url", "postgresql+asyncpg://u@db/s"),
        ("DATABASE_POOL_SIZE", "25", "database_pool_size", 25),
        ("DATABASE_POOL_SIZE", "1", "database_pool_size", 1),
        ("DATABASE_POOL_SIZE", "200", "database_pool_size", 200),
        ("BIND_HOST", "0.0.0.0", "bind_host", "0.0.0.0"),
        ("JWKS", "/etc/samhandling/jwks.json", "jwks", "/etc/samhandling/jwks.json"),
        (
            "TOKEN_ISSUER",
            "https://helseid-sts.test.nhn.no",
            "token_issuer",
            "https://helseid-sts.test.nhn.no",
        ),
        ("TOKEN_AUDIENCE", "nhn:samhandling", "token_audience", "nhn:samhandling"),
        ("MAX_PAYLOAD_BYTES", "2048", "max_payload_bytes", 2048),
        ("MAX_PAYLOAD_BYTES", str(64 * 1024 * 1024), "max_payload_bytes", 64 * 1024 * 1024),
        ("CALL_TIMEOUT_SECONDS", "2.5", "call_timeout_seconds", 2.5),
        ("SHUTDOWN_GRACE_SECONDS", "30", "shutdown_grace_seconds", 30.0),
        ("DATABASE_CHECK_INTERVAL_SECONDS", "0.5", "database_check_interval_seconds", 0.5),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("LOG_LEVEL", "Warning", "log_level", "WARNING"),
        ("MAX_CONCURRENT_STREAMS", "1", "max_concurrent_streams", 1),
        ("MAX_CONCURRENT_STREAMS", "250", "max_concurrent_streams", 250),
        ("MAX_CALL_SECONDS", "0.5", "max_call_seconds", 0.5),
        ("MAX_CALL_SECONDS", "120", "max_call_seconds", 120.0),
        ("RATE_LIMIT_PER_SECOND", "0", "rate_limit_per_second", 0.0),
        ("RATE_LIMIT_PER_SECOND", "0.5", "rate_limit_per_second", 0.5),
        ("RATE_LIMIT_PER_SECOND", "5000", "rate_limit_per_second", 5000.0),
        ("RATE_LIMIT_BURST", "1", "rate_limit_burst", 1),
        ("RATE_LIMIT_BURST", "20000", "rate_limit_burst", 20000),
        ("MAX_STREAMS_PER_CLIENT", "0", "max_streams_per_client", 0),
        ("MAX_STREAMS_PER_CLIENT", "4", "max_streams_per_client", 4),
    ],
)
def test_variable_is_parsed(variable: str, value: str, attribute: str, expected: object) -> None:
    settings = Settings.from_env({f"SAMHANDLING_{variable}": value})

    assert getattr(settings, attribute) == expected


def test_tenant_table_is_parsed() -> None:
    settings = Settings.from_env({"SAMHANDLING_TENANTS": "0301=123456785,0301=972418013"})

    assert settings.tenants.organisations_of("0301") == ["123456785", "972418013"]
    assert settings.tenants.tenant_of("935478715") is None


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_value_counts_as_unset(blank: str) -> None:
    environ = {
        "SAMHANDLING_DATABASE_URL": blank,
        "SAMHANDLING_DATABASE_POOL_SIZE": blank,
        "SAMHANDLING_LOG_LEVEL": blank,
        "SAMHANDLING_TENANTS": blank,
        "SAMHANDLING_STORAGE_PORT": blank,
    }

    assert Settings.from_env(environ) == Settings()


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("ENVIRONMENT", "staging", "SAMHANDLING_ENVIRONMENT='staging' must be one of"),
        ("LOG_LEVEL", "verbose", "SAMHANDLING_LOG_LEVEL='VERBOSE' must be one of"),
        ("DATABASE_POOL_SIZE", "ten", "SAMHANDLING_DATABASE_POOL_SIZE='ten' must be a whole number"),
        ("DATABASE_POOL_SIZE", "0", "SAMHANDLING_DATABASE_POOL_SIZE=0 must be between 1 and 200"),
        ("DATABASE_POOL_SIZE", "201", "SAMHANDLING_DATABASE_POOL_SIZE=201 must be between 1 and 200"),
        ("DATABASE_POOL_SIZE", "2.5", "SAMHANDLING_DATABASE_POOL_SIZE='2.5' must be a whole number"),
        ("MAX_PAYLOAD_BYTES", "0", "SAMHANDLING_MAX_PAYLOAD_BYTES=0 must be between"),
        ("MAX_PAYLOAD_BYTES", str(64 * 1024 * 1024 + 1), "SAMHANDLING_MAX_PAYLOAD_BYTES="),
        ("ACCESS_PORT", "65536", "SAMHANDLING_ACCESS_PORT=65536 must be between 0 and 65535"),
        ("NEWS2_PORT", "-1", "SAMHANDLING_NEWS2_PORT=-1 must be between 0 and 65535"),
        ("STORAGE_PORT", "http", "SAMHANDLING_STORAGE_PORT='http' must be a whole number"),
        ("CALL_TIMEOUT_SECONDS", "0", "SAMHANDLING_CALL_TIMEOUT_SECONDS='0' must be a number of seconds"),
        ("CALL_TIMEOUT_SECONDS", "-3", "SAMHANDLING_CALL_TIMEOUT_SECONDS='-3' must be a number of seconds"),
        ("CALL_TIMEOUT_SECONDS", "5s", "SAMHANDLING_CALL_TIMEOUT_SECONDS='5s' must be a number of seconds"),
        ("CALL_TIMEOUT_SECONDS", "nan", "SAMHANDLING_CALL_TIMEOUT_SECONDS='nan' must be a number of seconds"),
        ("SHUTDOWN_GRACE_SECONDS", "inf", "SAMHANDLING_SHUTDOWN_GRACE_SECONDS='inf' must be a number"),
        ("SHUTDOWN_GRACE_SECONDS", "3600", "SAMHANDLING_SHUTDOWN_GRACE_SECONDS='3600' must be a number"),
        ("DATABASE_CHECK_INTERVAL_SECONDS", "x", "SAMHANDLING_DATABASE_CHECK_INTERVAL_SECONDS='x' must be"),
        ("MAX_CONCURRENT_STREAMS", "0", "SAMHANDLING_MAX_CONCURRENT_STREAMS=0 must be between 1 and 1000000"),
        ("MAX_CONCURRENT_STREAMS", "many", "SAMHANDLING_MAX_CONCURRENT_STREAMS='many' must be a whole number"),
        ("MAX_CALL_SECONDS", "0", "SAMHANDLING_MAX_CALL_SECONDS='0' must be a number of seconds above 0"),
        ("MAX_CALL_SECONDS", "30s", "SAMHANDLING_MAX_CALL_SECONDS='30s' must be a number of seconds above 0"),
        ("RATE_LIMIT_PER_SECOND", "-1", "SAMHANDLING_RATE_LIMIT_PER_SECOND='-1' must be a number from 0 up to"),
        ("RATE_LIMIT_PER_SECOND", "nan", "SAMHANDLING_RATE_LIMIT_PER_SECOND='nan' must be a number from 0"),
        ("RATE_LIMIT_PER_SECOND", "inf", "SAMHANDLING_RATE_LIMIT_PER_SECOND='inf' must be a number from 0"),
        ("RATE_LIMIT_PER_SECOND", "500/s", "SAMHANDLING_RATE_LIMIT_PER_SECOND='500/s' must be a number"),
        ("RATE_LIMIT_BURST", "0", "SAMHANDLING_RATE_LIMIT_BURST=0 must be between 1 and 1000000"),
        ("RATE_LIMIT_BURST", "1.5", "SAMHANDLING_RATE_LIMIT_BURST='1.5' must be a whole number"),
        ("MAX_STREAMS_PER_CLIENT", "-1", "SAMHANDLING_MAX_STREAMS_PER_CLIENT=-1 must be between 0 and 1000000"),
    ],
)
def test_bad_value_is_reported(variable: str, value: str, problem: str) -> None:
    problems = problems_of({f"SAMHANDLING_{variable}": value})

    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_several_bad_values_are_reported_together() -> None:
    environ = {
        "SAMHANDLING_ENVIRONMENT": "staging",
        "SAMHANDLING_DATABASE_POOL_SIZE": "many",
        "SAMHANDLING_OVERVIEW_PORT": "99999",
        "SAMHANDLING_CALL_TIMEOUT_SECONDS": "soon",
        "SAMHANDLING_LOG_LEVEL": "loud",
        "SAMHANDLING_TENANTS": "1804=000000001",
    }

    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)

    assert len(caught.value.problems) == len(environ)
    for variable in environ:
        assert sum(problem.startswith(variable) for problem in caught.value.problems) == 1
        assert variable in str(caught.value)


def test_production_requires_keys_issuer_and_audience() -> None:
    problems = problems_of({"SAMHANDLING_ENVIRONMENT": "production"})

    # The database URL is required by the services that own tables only (services.catalog).
    assert sorted(problems) == sorted(
        f"SAMHANDLING_{name} is required in production" for name in ("JWKS", "TOKEN_ISSUER", "TOKEN_AUDIENCE")
    )


@pytest.mark.parametrize(
    "missing", [name for name in PRODUCTION if name not in ("SAMHANDLING_ENVIRONMENT", "SAMHANDLING_DATABASE_URL")]
)
def test_production_names_the_one_missing_variable(missing: str) -> None:
    environ = {name: value for name, value in PRODUCTION.items() if name != missing}

    assert problems_of(environ) == [f"{missing} is required in production"]


def test_complete_production_configuration() -> None:
    settings = Settings.from_env(PRODUCTION)

    assert settings.production
    assert settings.database_url == PRODUCTION["SAMHANDLING_DATABASE_URL"]
    assert settings.jwks == PRODUCTION["SAMHANDLING_JWKS"]
    assert settings.token_issuer == PRODUCTION["SAMHANDLING_TOKEN_ISSUER"]
    assert settings.token_audience == PRODUCTION["SAMHANDLING_TOKEN_AUDIENCE"]


@pytest.mark.parametrize("environment", ["development", "test"])
def test_outside_production_nothing_is_required(environment: str) -> None:
    settings = Settings.from_env({"SAMHANDLING_ENVIRONMENT": environment})

    assert not settings.production
    assert settings.database_url is None
    assert settings.jwks is None


@pytest.mark.parametrize(
    ("tenants", "problem"),
    [
        ("1804=972418013,3201=972418013", "listed for two municipalities"),
        ("1804=972418012", "check digit does not match"),
        ("18=972418013", "four-digit municipality number"),
        ("1804", "must look like 1804=972418013"),
    ],
)
def test_bad_tenant_table_is_rejected(tenants: str, problem: str) -> None:
    problems = problems_of({"SAMHANDLING_TENANTS": tenants})

    assert len(problems) == 1
    assert problems[0].startswith("SAMHANDLING_TENANTS: ")
    assert problem in problems[0]


def test_ports_are_parsed_and_addresses_follow_them() -> None:
    settings = Settings.from_env({"SAMHANDLING_ACCESS_PORT": "6001", "SAMHANDLING_STORAGE_PORT": "0"})

    assert dict(settings.ports) == {"access": 6001, "overview": 50052, "news2": 50053, "storage": 0}
    assert settings.addresses["access"] == "127.0.0.1:6001"
    assert settings.addresses["storage"] == "127.0.0.1:0"
    assert settings.addresses["overview"] == "127.0.0.1:50052"


def test_explicit_address_wins_over_the_port() -> None:
    settings = Settings.from_env(
        {
            "SAMHANDLING_NEWS2_PORT": "7000",
            "SAMHANDLING_NEWS2_ADDRESS": "news2.samhandling.svc:50053",
            "SAMHANDLING_STORAGE_ADDRESS": "storage:8080",
        }
    )

    assert settings.ports["news2"] == 7000
    assert settings.addresses["news2"] == "news2.samhandling.svc:50053"
    assert settings.addresses["storage"] == "storage:8080"
    assert settings.addresses["access"] == "127.0.0.1:50051"


def test_with_overrides_returns_a_changed_copy() -> None:
    settings = Settings.from_env({})

    changed = settings.with_overrides(environment="production", max_payload_bytes=10)

    assert changed.production and changed.max_payload_bytes == 10
    assert settings.environment == "development" and settings.max_payload_bytes == 1024 * 1024
