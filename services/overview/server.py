"""Wiring of the overview service."""

from __future__ import annotations

from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

from services.overview.api.servicer import OverviewServiceServicer
from services.platform.server import ServiceDefinition
from services.platform.settings import Settings

SERVICE_NAME = overview_pb2.DESCRIPTOR.services_by_name["OverviewService"].full_name


def build(settings: Settings) -> ServiceDefinition:
    servicer = OverviewServiceServicer()
    return ServiceDefinition(
        full_name=SERVICE_NAME,
        register=lambda server: overview_pb2_grpc.add_OverviewServiceServicer_to_server(servicer, server),
    )
