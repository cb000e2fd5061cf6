"""Wiring of the access service: database engine, access store, follow-up notifier, servicer."""

from __future__ import annotations

from samhandling.access.v1 import access_pb2, access_pb2_grpc

from services.access.adapters.access_store import FOLLOW_UP_CHANNEL, PostgresAccessStore
from services.access.api.servicer import AccessServiceServicer
from services.platform.database import create_engine, database_health_monitor
from services.platform.notifications import ChangeNotifier
from services.platform.server import ServiceDefinition
from services.platform.settings import Settings

SERVICE_NAME = access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name


def build(settings: Settings, database_url: str) -> ServiceDefinition:
    engine = create_engine(database_url, pool_size=settings.database_pool_size)
    follow_ups = ChangeNotifier(engine, FOLLOW_UP_CHANNEL)
    servicer = AccessServiceServicer(
        PostgresAccessStore(engine),
        follow_ups,
        settings.tenants,
        check_birth_dates=settings.production,
    )

    async def close() -> None:
        await servicer.decisions.close()
        await engine.dispose()

    return ServiceDefinition(
        full_name=SERVICE_NAME,
        register=lambda server: access_pb2_grpc.add_AccessServiceServicer_to_server(servicer, server),
        background=[database_health_monitor(engine, settings.database_check_interval_seconds), follow_ups.listen],
        draining=follow_ups.close,
        close=close,
    )
