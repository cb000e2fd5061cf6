"""Wiring of the access service."""

from __future__ import annotations

from samhandling.access.v1 import access_pb2, access_pb2_grpc

from services.access.api.servicer import AccessServiceServicer
from services.platform.server import ServiceDefinition
from services.platform.settings import Settings

SERVICE_NAME = access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name


def build(settings: Settings) -> ServiceDefinition:
    servicer = AccessServiceServicer()
    return ServiceDefinition(
        full_name=SERVICE_NAME,
        register=lambda server: access_pb2_grpc.add_AccessServiceServicer_to_server(servicer, server),
    )
