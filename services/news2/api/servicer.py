"""The News2Service servicer. The contract has no RPCs yet: they arrive with the news2 issue."""

from __future__ import annotations

from samhandling.news2.v1 import news2_pb2_grpc


class News2ServiceServicer(news2_pb2_grpc.News2ServiceServicer):
    pass
