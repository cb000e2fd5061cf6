"""Wiring of the overview service: channels to storage and access, the servicer."""

from __future__ import annotations

from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

from services.overview.api.servicer import OverviewServiceServicer
from services.overview.domain.submission import SubmissionLimits
from services.platform.access_client import AccessClient
from services.platform.channels import ACCESS_RETRYABLE_METHODS, STORAGE_IDEMPOTENT_METHODS, open_channel
from services.platform.feeds import StreamDrain
from services.platform.server import ServiceDefinition
from services.platform.settings import Settings
from services.platform.storage_client import StorageClient

SERVICE_NAME = overview_pb2.DESCRIPTOR.services_by_name["OverviewService"].full_name


def build(settings: Settings) -> ServiceDefinition:
    storage_channel = open_channel(
        settings.addresses["storage"],
        idempotent_methods=STORAGE_IDEMPOTENT_METHODS,
        timeout_seconds=settings.call_timeout_seconds,
    )
    access_channel = open_channel(
        settings.addresses["access"],
        idempotent_methods=ACCESS_RETRYABLE_METHODS,
        timeout_seconds=settings.call_timeout_seconds,
    )
    drain = StreamDrain()
    servicer = OverviewServiceServicer(
        StorageClient(storage_channel),
        AccessClient(access_channel),
        drain,
        limits=SubmissionLimits(max_services=settings.max_services_per_submission),
        check_birth_dates=settings.production,
    )

    async def close() -> None:
        await storage_channel.close()
        await access_channel.close()

    return ServiceDefinition(
        full_name=SERVICE_NAME,
        register=lambda server: overview_pb2_grpc.add_OverviewServiceServicer_to_server(servicer, server),
        draining=drain.begin,
        close=close,
    )
