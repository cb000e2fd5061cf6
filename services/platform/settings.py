"""Settings, read once from `SAMHANDLING_*` environment variables at start-up and passed down.

Every problem is collected and reported together, naming the variable, so that a misconfigured
deployment fails at once with a message an operator can act on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from services.platform.tenants import DEFAULT_TENANTS, TenantTable

SERVICES = ("access", "overview", "news2", "storage")
DEFAULT_PORTS = {"access": 50051, "overview": 50052, "news2": 50053, "storage": 50054}
ENVIRONMENTS = ("development", "test", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEV_TOKEN_ISSUER = "https://dev-token.samhandling.local"
DEV_TOKEN_AUDIENCE = "samhandling"
PREFIX = "SAMHANDLING_"
# The largest value any of the limit settings accepts (a typo guard, not a recommendation).
MAX_LIMIT = 1_000_000


class SettingsError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Settings:
    environment: str = "development"
    data_dir: Path = Path(".samhandling")
    # None: run on the embedded PostgreSQL in the data directory.
    database_url: str | None = None
    database_pool_size: int = 10
    bind_host: str = "127.0.0.1"
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    # Where peers reach each service (host:port).
    addresses: Mapping[str, str] = field(
        default_factory=lambda: {name: f"127.0.0.1:{port}" for name, port in DEFAULT_PORTS.items()}
    )
    # A JWKS file path or an http(s) URL; None: the dev-token key pair in the data directory.
    jwks: str | None = None
    token_issuer: str = DEV_TOKEN_ISSUER
    token_audience: str = DEV_TOKEN_AUDIENCE
    tenants: TenantTable = field(default_factory=lambda: TenantTable.parse(DEFAULT_TENANTS))
    max_payload_bytes: int = 1024 * 1024
    call_timeout_seconds: float = 5.0
    shutdown_grace_seconds: float = 10.0
    database_check_interval_seconds: float = 2.0
    log_level: str = "INFO"
    # The most services one SubmitServices call may carry.
    max_services_per_submission: int = 200
    # Limits every service enforces (services.platform.server, services.platform.rate_limits).
    # HTTP/2 streams one connection may have open at once; a well-behaved client queues the rest.
    max_concurrent_streams: int = 100
    # The longest the server works on one unary call, whatever deadline the caller sent (or none).
    # Above the peer-call timeout, so a call that makes a few peer calls in turn can still finish.
    max_call_seconds: float = 30.0
    # Calls per second one client (tenant + the token's client_id) may make to one service process,
    # and how many it may make at once after a quiet spell; a rate of 0 turns the limit off. A client
    # is one vendor backend serving a whole municipality's clinicians; our estimate is tens of calls
    # per second at a busy legevakt's peak and a few hundred when a backend resubmits its overviews in
    # bulk. 500/s with a burst of 1000 is well above both (an order of magnitude above the peak), yet
    # keeps a runaway loop from taking a cheap path (scoring: ~2700/s per process in `make bench`).
    # A guard against runaway and hostile clients, not a fair share of the database.
    rate_limit_per_second: float = 500.0
    rate_limit_burst: int = 1000
    # Long-lived streams (Watch*) one client may hold open on one service at once; 0 turns this off.
    max_streams_per_client: int = 32

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def dev_keys_dir(self) -> Path:
        return self.data_dir / "dev-keys"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return _SettingsReader(os.environ if environ is None else environ).read()


class _SettingsReader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def read(self) -> Settings:
        defaults = Settings()
        environment = self._choice("ENVIRONMENT", ENVIRONMENTS, defaults.environment)
        production = environment == "production"
        ports = {name: self._port(f"{name.upper()}_PORT", port) for name, port in DEFAULT_PORTS.items()}
        addresses = {name: self._text(f"{name.upper()}_ADDRESS", f"127.0.0.1:{ports[name]}") for name in SERVICES}
        settings = Settings(
            environment=environment,
            data_dir=Path(self._text("DATA_DIR", str(defaults.data_dir))),
            # Required in production only by the services that own tables (see services.catalog).
            database_url=self._optional("DATABASE_URL"),
            database_pool_size=self._int("DATABASE_POOL_SIZE", defaults.database_pool_size, 1, 200),
            bind_host=self._text("BIND_HOST", defaults.bind_host),
            ports=ports,
            addresses=addresses,
            jwks=self._optional("JWKS", required=production),
            token_issuer=self._text("TOKEN_ISSUER", defaults.token_issuer, required=production),
            token_audience=self._text("TOKEN_AUDIENCE", defaults.token_audience, required=production),
            tenants=self._tenants(),
            max_payload_bytes=self._int("MAX_PAYLOAD_BYTES", defaults.max_payload_bytes, 1, 64 * 1024 * 1024),
            call_timeout_seconds=self._float("CALL_TIMEOUT_SECONDS", defaults.call_timeout_seconds),
            shutdown_grace_seconds=self._float("SHUTDOWN_GRACE_SECONDS", defaults.shutdown_grace_seconds),
            database_check_interval_seconds=self._float(
                "DATABASE_CHECK_INTERVAL_SECONDS", defaults.database_check_interval_seconds
            ),
            log_level=self._choice("LOG_LEVEL", LOG_LEVELS, defaults.log_level, upper=True),
            max_services_per_submission=self._int(
                "MAX_SERVICES_PER_SUBMISSION", defaults.max_services_per_submission, 1, 10_000
            ),
            max_concurrent_streams=self._int("MAX_CONCURRENT_STREAMS", defaults.max_concurrent_streams, 1, MAX_LIMIT),
            max_call_seconds=self._float("MAX_CALL_SECONDS", defaults.max_call_seconds),
            rate_limit_per_second=self._float(
                "RATE_LIMIT_PER_SECOND", defaults.rate_limit_per_second, zero_allowed=True, below=MAX_LIMIT
            ),
            rate_limit_burst=self._int("RATE_LIMIT_BURST", defaults.rate_limit_burst, 1, MAX_LIMIT),
            max_streams_per_client=self._int("MAX_STREAMS_PER_CLIENT", defaults.max_streams_per_client, 0, MAX_LIMIT),
        )
        if production and settings.jwks and not settings.jwks.startswith("https://"):
            self.problems.append(f"{PREFIX}JWKS must be an https:// URL in production")
        if self.problems:
            raise SettingsError(self.problems)
        return settings

    def _raw(self, name: str) -> str | None:
        value = self.environ.get(PREFIX + name)
        return value.strip() if value is not None and value.strip() else None

    def _optional(self, name: str, *, required: bool = False) -> str | None:
        value = self._raw(name)
        if value is None and required:
            self.problems.append(f"{PREFIX}{name} is required in production")
        return value

    def _text(self, name: str, default: str, *, required: bool = False) -> str:
        return self._optional(name, required=required) or default

    def _choice(self, name: str, choices: tuple[str, ...], default: str, *, upper: bool = False) -> str:
        value = self._raw(name)
        if value is None:
            return default
        value = value.upper() if upper else value.lower()
        if value not in choices:
            self.problems.append(f"{PREFIX}{name}={value!r} must be one of {', '.join(choices)}")
            return default
        return value

    def _int(self, name: str, default: int, low: int, high: int) -> int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.problems.append(f"{PREFIX}{name}={value!r} must be a whole number")
            return default
        if not low <= number <= high:
            self.problems.append(f"{PREFIX}{name}={number} must be between {low} and {high}")
            return default
        return number

    def _port(self, name: str, default: int) -> int:
        return self._int(name, default, 0, 65535)

    def _float(self, name: str, default: float, *, zero_allowed: bool = False, below: float = 3600) -> float:
        """Seconds by default: above 0 and below an hour. `zero_allowed` for a rate where 0 means off."""
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not (0 <= number if zero_allowed else 0 < number) or not number < below:  # also rejects nan
            if zero_allowed:
                self.problems.append(f"{PREFIX}{name}={value!r} must be a number from 0 up to {below:g}")
            else:
                self.problems.append(f"{PREFIX}{name}={value!r} must be a number of seconds above 0")
            return default
        return number

    def _tenants(self) -> TenantTable:
        try:
            return TenantTable.parse(self._raw("TENANTS") or DEFAULT_TENANTS)
        except ValueError as error:
            self.problems.append(f"{PREFIX}TENANTS: {error}")
            return TenantTable.parse(DEFAULT_TENANTS)
