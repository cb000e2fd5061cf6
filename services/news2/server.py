"""Wiring of the news2 service: the peers (storage and access), the assessment repository, the
servicer. No database of its own: assessments live in the storage service."""

from __future__ import annotations

from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc

from services.news2.adapters.assessments import Assessments
from services.news2.api.servicer import News2ServiceServicer
from services.platform.feeds import StreamDrain
from services.platform.peers import connect_peers
from services.platform.server import ServiceDefinition
from services.platform.settings import Settings

SERVICE_NAME = news2_pb2.DESCRIPTOR.services_by_name["News2Service"].full_name


def build(settings: Settings) -> ServiceDefinition:
    peers = connect_peers(settings)
    drain = StreamDrain()
    servicer = News2ServiceServicer(
        Assessments(peers.storage), peers.access, drain, check_birth_dates=settings.production
    )
    return ServiceDefinition(
        full_name=SERVICE_NAME,
        register=lambda server: news2_pb2_grpc.add_News2ServiceServicer_to_server(servicer, server),
        draining=drain.begin,
        close=peers.close,
    )
