"""Wiring of the storage service: database engine, record store, change notifier, servicer."""

from __future__ import annotations

from samhandling.storage.v1 import storage_pb2, storage_pb2_grpc

from services.platform.database import create_engine, database_health_monitor
from services.platform.notifications import ChangeNotifier
from services.platform.server import ServiceDefinition, max_message_bytes
from services.platform.settings import Settings
from services.storage.adapters.record_store import CHANGES_CHANNEL, PostgresRecordStore
from services.storage.api.servicer import StorageServicer
from services.storage.domain.records import RecordValidator

# Room in a response for everything but the payloads (metadata of up to 1000 records).
PAGE_OVERHEAD_BYTES = 512 * 1024
SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name


def build(settings: Settings, database_url: str) -> ServiceDefinition:
    engine = create_engine(database_url, pool_size=settings.database_pool_size)
    notifier = ChangeNotifier(engine, CHANGES_CHANNEL)
    servicer = StorageServicer(
        PostgresRecordStore(engine),
        notifier,
        RecordValidator(check_birth_dates=settings.production, max_payload_bytes=settings.max_payload_bytes),
        page_byte_budget=max_message_bytes(settings.max_payload_bytes) - PAGE_OVERHEAD_BYTES,
    )

    async def close() -> None:
        await engine.dispose()

    return ServiceDefinition(
        full_name=SERVICE_NAME,
        register=lambda server: storage_pb2_grpc.add_StorageServiceServicer_to_server(servicer, server),
        background=[database_health_monitor(engine, settings.database_check_interval_seconds), notifier.listen],
        draining=notifier.close,
        close=close,
    )
