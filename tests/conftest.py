"""Fixtures: one embedded PostgreSQL for the session, dev tokens, and a storage server in-process
on a real port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from grpc import aio
from samhandling.access.v1 import access_pb2_grpc
from samhandling.storage.v1 import storage_pb2_grpc

from services.catalog import build_service, build_verifier, migrate_database
from services.platform.dev_tokens import DevTokenRequest, mint_dev_token
from services.platform.embedded_database import EmbeddedPostgres
from services.platform.rate_limits import ServerLimits
from services.platform.server import RunningServer, start_server
from services.platform.settings import Settings
from tests.support import BAERUM, BODO

Mint = Callable[..., str]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("samhandling")


@pytest.fixture(scope="session")
def database(data_dir: Path) -> Iterator[EmbeddedPostgres]:
    postgres = EmbeddedPostgres(data_dir)
    migrate_database(postgres.start())
    yield postgres
    postgres.stop()


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, shutdown_grace_seconds=2.0, database_check_interval_seconds=0.2)


@pytest.fixture(scope="session")
def mint(settings: Settings) -> Mint:
    """Mints a dev token: mint(tenant="1804", hpr_number=..., client_id=..., extra_claims=...)."""

    def _mint(tenant: str = BODO, **fields: object) -> str:
        organisation = settings.tenants.organisations_of(tenant)[0] if tenant in (BODO, BAERUM) else tenant
        request = DevTokenRequest(
            organisation_number=organisation,
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            **fields,  # type: ignore[arg-type]
        )
        return mint_dev_token(settings.dev_keys_dir, request)

    return _mint


async def start_storage(settings: Settings, database_url: str) -> RunningServer:
    return await start_service("storage", settings, database_url)


async def start_service(name: str, settings: Settings, database_url: str | None = None) -> RunningServer:
    """One service in-process on a free port, built exactly as `samhandling serve` builds it."""
    return await start_server(
        build_service(name, settings, database_url),
        verifier=build_verifier(settings),
        host="127.0.0.1",
        port=0,
        max_payload_bytes=settings.max_payload_bytes,
        grace_seconds=settings.shutdown_grace_seconds,
        limits=ServerLimits.from_settings(settings),
    )


@pytest.fixture(scope="session")
async def storage_server(settings: Settings, database: EmbeddedPostgres) -> AsyncIterator[RunningServer]:
    running = await start_storage(settings, database.url)
    yield running
    await running.stop()


@pytest.fixture
async def storage_channel(storage_server: RunningServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(f"127.0.0.1:{storage_server.port}") as channel:
        yield channel


@pytest.fixture
def storage(storage_channel: aio.Channel) -> storage_pb2_grpc.StorageServiceStub:
    return storage_pb2_grpc.StorageServiceStub(storage_channel)


@pytest.fixture(scope="session")
async def access_server(settings: Settings, database: EmbeddedPostgres) -> AsyncIterator[RunningServer]:
    running = await start_service("access", settings, database.url)
    yield running
    await running.stop()


@pytest.fixture
async def access(access_server: RunningServer) -> AsyncIterator[access_pb2_grpc.AccessServiceStub]:
    async with aio.insecure_channel(f"127.0.0.1:{access_server.port}") as channel:
        yield access_pb2_grpc.AccessServiceStub(channel)


@pytest.fixture(scope="session")
def mesh_settings(settings: Settings, storage_server: RunningServer, access_server: RunningServer) -> Settings:
    """Settings for the services that call peers: storage and access as started in-process above."""
    addresses = dict(settings.addresses)
    addresses |= {"storage": f"127.0.0.1:{storage_server.port}", "access": f"127.0.0.1:{access_server.port}"}
    return settings.with_overrides(addresses=addresses)


@pytest.fixture(scope="session")
async def overview_server(mesh_settings: Settings) -> AsyncIterator[RunningServer]:
    running = await start_service("overview", mesh_settings)
    yield running
    await running.stop()


@pytest.fixture(scope="session")
async def news2_server(mesh_settings: Settings) -> AsyncIterator[RunningServer]:
    running = await start_service("news2", mesh_settings)
    yield running
    await running.stop()
