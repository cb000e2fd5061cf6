"""The peers a patient-data service calls — storage and access — over channels with deadlines,
forwarding and retries configured, and how to close them."""

from __future__ import annotations

from dataclasses import dataclass

from grpc import aio

from services.platform.access_client import AccessClient
from services.platform.channels import ACCESS_RETRYABLE_METHODS, STORAGE_IDEMPOTENT_METHODS, open_channel
from services.platform.settings import Settings
from services.platform.storage_client import StorageClient


@dataclass(frozen=True)
class Peers:
    storage: StorageClient
    access: AccessClient
    channels: tuple[aio.Channel, ...]

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


def connect_peers(settings: Settings) -> Peers:
    storage = open_channel(
        settings.addresses["storage"],
        idempotent_methods=STORAGE_IDEMPOTENT_METHODS,
        timeout_seconds=settings.call_timeout_seconds,
    )
    access = open_channel(
        settings.addresses["access"],
        idempotent_methods=ACCESS_RETRYABLE_METHODS,
        timeout_seconds=settings.call_timeout_seconds,
    )
    # Long-lived Watch streams get a connection of their own: the server caps the streams of one
    # connection, and a crowd of watchers must never make unary calls wait for a free stream.
    storage_streams = open_channel(
        settings.addresses["storage"], timeout_seconds=settings.call_timeout_seconds, own_connection=True
    )
    return Peers(
        StorageClient(storage, streams=storage_streams), AccessClient(access), (storage, storage_streams, access)
    )
