"""The AccessService servicer. The contract has no RPCs yet: they arrive with the access issue."""

from __future__ import annotations

from samhandling.access.v1 import access_pb2_grpc


class AccessServiceServicer(access_pb2_grpc.AccessServiceServicer):
    pass
