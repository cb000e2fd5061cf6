"""Wiring of the news2 service: channels to the storage and access services, the assessment
repository, the servicer. No database of its own: assessments live in the storage service."""

from __future__ import annotations

from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc

from services.news2.adapters.assessments import Assessments
from services.news2.api.servicer import News2ServiceServicer
from services.platform.access_client import AccessClient
from services.platform.channels import ACCESS_RETRYABLE_METHODS, STORAGE_IDEMPOTENT_METHODS, open_channel
from services.platform.feeds import StreamDrain
from services.platform.server import ServiceDefinition
from services.platform.settings import Settings
from services.platform.storage_client import StorageClient

SERVICE_NAME = news2_pb2.DESCRIPTOR.services_by_name["News2Service"].full_name


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
    servicer = News2ServiceServicer(
        Assessments(StorageClient(storage_channel)),
        AccessClient(access_channel),
        drain,
        check_birth_dates=settings.production,
    )

    async def close() -> None:
        await storage_channel.close()
        await access_channel.close()

    return ServiceDefinition(
        full_name=SERVICE_NAME,
        register=lambda server: news2_pb2_grpc.add_News2ServiceServicer_to_server(servicer, server),
        draining=drain.begin,
        close=close,
    )
