"""The access service as the overview and news2 services see it: one call before every patient-data
read or write, with the end user's token forwarded. A denial comes back as the same PERMISSION_DENIED,
with the same reason, that the access service gave."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from grpc import aio
from samhandling.access.v1 import access_pb2, access_pb2_grpc

from services.platform.errors import PermissionDenied
from services.platform.peer_errors import domain_error
from services.platform.principal import Principal

# Denials that concern one patient: a feed leaves that patient's item out and goes on.
PATIENT_LEVEL_DENIALS = frozenset({"PATIENT_OBJECTED", "PRACTITIONER_BLOCKED"})


def require_feed_subscriber(caller: Principal, tenant: str) -> None:
    """Fails a feed subscription at once rather than at its first item. Access still decides each item."""
    if caller.tenant != tenant:
        raise PermissionDenied("TENANT_MISMATCH", "the caller's organisation does not belong to this municipality")
    if not caller.may_follow_feeds:
        raise PermissionDenied(
            "FEED_NOT_ALLOWED", "following a feed needs a system token with the samhandling:feed scope"
        )


class DataKind(enum.IntEnum):
    SERVICES_OVERVIEW = access_pb2.DATA_KIND_SERVICES_OVERVIEW
    VITAL_SIGNS = access_pb2.DATA_KIND_VITAL_SIGNS


class Action(enum.IntEnum):
    READ = access_pb2.ACTION_READ
    WRITE = access_pb2.ACTION_WRITE


@dataclass(frozen=True)
class Grant:
    decision_id: str
    tenant: str
    break_the_glass: bool


class AccessClient:
    def __init__(self, channel: aio.Channel) -> None:
        self.stub = access_pb2_grpc.AccessServiceStub(channel)

    async def authorize(
        self, tenant: str, patient_id: str, data_kind: DataKind, action: Action, *, feed: bool = False
    ) -> Grant:
        """Returns the grant, or raises PermissionDenied / Unauthenticated / Unavailable."""
        request = access_pb2.AuthorizeRequest(
            tenant=tenant, patient_id=patient_id, data_kind=data_kind, action=action, feed=feed
        )
        try:
            response = await self.stub.Authorize(request)
        except aio.AioRpcError as error:
            raise domain_error(error, "access") from None
        return Grant(response.decision_id, response.tenant, response.break_the_glass)

    async def may_deliver(self, tenant: str, patient_id: str, data_kind: DataKind) -> bool:
        """A feed item, decided and logged: True to deliver it, False to leave it out because of the
        patient's own objection or block. Any other denial ends the feed (it raises)."""
        try:
            await self.authorize(tenant, patient_id, data_kind, Action.READ, feed=True)
        except PermissionDenied as denial:
            if denial.reason in PATIENT_LEVEL_DENIALS:
                return False
            raise
        return True
