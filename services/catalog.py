"""Which services exist and how each is built and run: the one place that knows all four."""

from __future__ import annotations

import asyncio
import logging

from services.platform.database import create_engine, role_bypasses_row_security
from services.platform.dev_tokens import ensure_dev_keys
from services.platform.rate_limits import ServerLimits
from services.platform.server import ServiceDefinition, serve_until_terminated, start_server
from services.platform.settings import Settings
from services.platform.telemetry import configure_telemetry
from services.platform.tokens import JwksSource, TokenVerifier

log = logging.getLogger(__name__)

DATABASE_SERVICES = ("storage", "access")
DATABASE_WAIT_SECONDS = 30.0


def migrate_database(database_url: str) -> None:
    """Brings every service's tables up to date (each service keeps its own migration history)."""
    from services.access.adapters.migrations import upgrade_to_head as upgrade_access
    from services.storage.adapters.migrations import upgrade_to_head as upgrade_storage

    upgrade_storage(database_url)
    upgrade_access(database_url)


def build_verifier(settings: Settings) -> TokenVerifier:
    jwks = settings.jwks or str(ensure_dev_keys(settings.dev_keys_dir))
    return TokenVerifier(
        JwksSource(jwks), issuer=settings.token_issuer, audience=settings.token_audience, tenants=settings.tenants
    )


def build_service(name: str, settings: Settings, database_url: str | None) -> ServiceDefinition:
    if name == "storage":
        from services.storage import server as storage

        if database_url is None:
            raise ValueError("the storage service needs a database URL")
        definition = storage.build(settings, database_url)
        definition.startup = lambda: refuse_row_security_bypass(database_url)
        return definition
    if name == "access":
        from services.access import server as access

        if database_url is None:
            raise ValueError("the access service needs a database URL")
        definition = access.build(settings, database_url)
        definition.startup = lambda: refuse_row_security_bypass(database_url)
        return definition
    if name == "overview":
        from services.overview import server as overview

        return overview.build(settings)
    if name == "news2":
        from services.news2 import server as news2

        return news2.build(settings)
    raise ValueError(f"unknown service {name!r}")


async def refuse_row_security_bypass(database_url: str) -> None:
    """Tenant isolation rests on row-level security; a role that bypasses it would silently void it."""
    engine = create_engine(database_url, pool_size=1)
    try:
        deadline = asyncio.get_running_loop().time() + DATABASE_WAIT_SECONDS
        while True:
            try:
                role = await role_bypasses_row_security(engine)
                break
            except Exception as error:
                if asyncio.get_running_loop().time() > deadline:
                    raise SystemExit(f"the database is unreachable: {type(error).__name__}: {error}") from None
                await asyncio.sleep(1)
    finally:
        await engine.dispose()
    if role is not None:
        raise SystemExit(
            f"the database role {role!r} is a superuser or has BYPASSRLS, which would void tenant "
            "isolation; connect as a role without them (e.g. the table owner)"
        )


async def run_service(name: str, settings: Settings, database_url: str | None, port: int | None = None) -> None:
    """Runs one service until SIGTERM; telemetry (from the OTEL_* variables) is set up first and
    flushed last, after in-flight calls have finished."""
    telemetry = configure_telemetry(name, database=name in DATABASE_SERVICES)
    try:
        definition = build_service(name, settings, database_url)
        running = await start_server(
            definition,
            verifier=build_verifier(settings),
            host=settings.bind_host,
            port=settings.ports[name] if port is None else port,
            max_payload_bytes=settings.max_payload_bytes,
            grace_seconds=settings.shutdown_grace_seconds,
            limits=ServerLimits.from_settings(settings),
        )
        print(f"{name} serving on {settings.bind_host}:{running.port}", flush=True)
        await serve_until_terminated(running)
    finally:
        telemetry.shutdown()
