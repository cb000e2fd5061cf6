"""The OverviewService servicer. The contract has no RPCs yet: they arrive with the overview issue."""

from __future__ import annotations

from samhandling.overview.v1 import overview_pb2_grpc


class OverviewServiceServicer(overview_pb2_grpc.OverviewServiceServicer):
    pass
