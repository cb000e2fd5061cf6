"""Wiring of the overview service: the peers (storage and access), the servicer. No database of its
own: each source's list lives in the storage service."""

from __future__ import annotations

from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

from services.overview.api.servicer import OverviewServiceServicer
from services.overview.domain.submission import SubmissionLimits
from services.platform.feeds import StreamDrain
from services.platform.peers import connect_peers
from services.platform.server import ServiceDefinition
from services.platform.settings import Settings

SERVICE_NAME = overview_pb2.DESCRIPTOR.services_by_name["OverviewService"].full_name


def build(settings: Settings) -> ServiceDefinition:
    peers = connect_peers(settings)
    drain = StreamDrain()
    servicer = OverviewServiceServicer(
        peers.storage,
        peers.access,
        drain,
        limits=SubmissionLimits(max_services=settings.max_services_per_submission),
        check_birth_dates=settings.production,
    )
    return ServiceDefinition(
        full_name=SERVICE_NAME,
        register=lambda server: overview_pb2_grpc.add_OverviewServiceServicer_to_server(servicer, server),
        draining=drain.begin,
        close=peers.close,
    )
