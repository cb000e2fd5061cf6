"""Wiring of the news2 service."""

from __future__ import annotations

from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc

from services.news2.api.servicer import News2ServiceServicer
from services.platform.server import ServiceDefinition
from services.platform.settings import Settings

SERVICE_NAME = news2_pb2.DESCRIPTOR.services_by_name["News2Service"].full_name


def build(settings: Settings) -> ServiceDefinition:
    servicer = News2ServiceServicer()
    return ServiceDefinition(
        full_name=SERVICE_NAME,
        register=lambda server: news2_pb2_grpc.add_News2ServiceServicer_to_server(servicer, server),
    )
