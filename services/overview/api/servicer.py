"""The OverviewService servicer: validates, asks access for a decision, then reads or writes the
sources' lists and compiles them."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import date, datetime
from zoneinfo import ZoneInfo

from grpc import aio
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

from services.overview.adapters.service_lists import KIND, ServiceLists, stored_list
from services.overview.api import mappers
from services.overview.domain import fhir
from services.overview.domain.codes import ServiceTypeCatalog
from services.overview.domain.compilation import compile_overview, count_active
from services.overview.domain.services import ServiceStatus
from services.overview.domain.submission import SubmissionLimits
from services.platform.access_client import (
    AccessClient,
    Action,
    DataKind,
    require_feed_subscriber,
)
from services.platform.errors import UNREADABLE_PAYLOAD, DataLoss, FieldViolation, InvalidArgument, raise_if_any
from services.platform.feeds import StreamDrain
from services.platform.logs import describe_error
from services.platform.principal import Principal
from services.platform.request_context import current_principal
from services.platform.requests import check_idempotency_key, check_patient_id, feed_request, requested_tenant
from services.platform.storage_client import StorageClient

MUNICIPAL_TIME_ZONE = ZoneInfo("Europe/Oslo")
# What reading a stored list raises when its bytes are not one this service wrote.
UNREADABLE = (DataLoss, *UNREADABLE_PAYLOAD)
FHIR_CONTENT_TYPE = "application/fhir+json; fhirVersion=4.0"
DEFAULT_HISTORY_PAGE = 20
MAX_HISTORY_PAGE = 100

log = logging.getLogger(__name__)


def oslo_today() -> date:
    return datetime.now(MUNICIPAL_TIME_ZONE).date()


class OverviewServiceServicer(overview_pb2_grpc.OverviewServiceServicer):
    def __init__(
        self,
        storage: StorageClient,
        access: AccessClient,
        drain: StreamDrain,
        *,
        limits: SubmissionLimits,
        check_birth_dates: bool,
        today: Callable[[], date] = oslo_today,
    ) -> None:
        self.storage = storage
        self.lists = ServiceLists(storage)
        self.access = access
        self.drain = drain
        self.catalog = ServiceTypeCatalog.national()
        self.limits = limits
        self.check_birth_dates = check_birth_dates
        self.today = today

    async def SubmitServices(self, request: overview_pb2.SubmitServicesRequest, context: aio.ServicerContext):
        caller = current_principal()
        violations: list[FieldViolation] = []
        tenant = self._patient(request, caller, violations)
        check_idempotency_key(request.idempotency_key, violations)
        try:
            services = mappers.submitted_services(request.services, self.catalog, self.limits)
        except InvalidArgument as error:
            violations += error.violations
            services = ()
        raise_if_any(violations)
        await self.access.authorize(tenant, request.patient_id, DataKind.SERVICES_OVERVIEW, Action.WRITE)
        stored, replayed = await self.lists.save(
            tenant, request.patient_id, caller.client_id, services, request.idempotency_key
        )
        return overview_pb2.SubmitServicesResponse(
            source_system=stored.source.source_system,
            version=stored.version,
            sequence=stored.sequence,
            services=[mappers.service_message(service) for service in stored.source.services],
            replayed=replayed,
        )

    async def GetOverview(self, request: overview_pb2.GetOverviewRequest, context: aio.ServicerContext):
        tenant = await self._authorized_read(request)
        return await self._overview(tenant, request.patient_id)

    async def CountActiveServices(self, request: overview_pb2.CountActiveServicesRequest, context: aio.ServicerContext):
        tenant = await self._authorized_read(request)
        today = self.today()
        lists = await self.lists.current(tenant, request.patient_id)
        return overview_pb2.CountActiveServicesResponse(
            active_count=count_active(lists, today), as_of_date=today.isoformat()
        )

    async def WatchOverviews(
        self, request: overview_pb2.WatchOverviewsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[overview_pb2.WatchOverviewsResponse]:
        caller, tenant = feed_request(request)
        require_feed_subscriber(caller, tenant)
        changes = self.drain.relay(self.storage.watch(tenant, request.from_sequence, [KIND]))
        async with aclosing(changes):
            async for change in changes:
                # A stored list that cannot be read (written past this service, straight into storage) is
                # logged and passed over, so that it cannot stop the tenant's feed for good.
                try:
                    source_system = stored_list(change).source.source_system
                except UNREADABLE as error:
                    log.error(
                        "unreadable services list at sequence %d skipped: %s", change.sequence, describe_error(error)
                    )
                    continue
                if not await self.access.may_deliver(tenant, change.patient_id, DataKind.SERVICES_OVERVIEW):
                    continue
                try:
                    overview = await self._overview(tenant, change.patient_id)
                except UNREADABLE as error:
                    log.error(
                        "overview at sequence %d cannot be compiled, skipped: %s",
                        change.sequence,
                        describe_error(error),
                    )
                    continue
                yield overview_pb2.WatchOverviewsResponse(
                    sequence=change.sequence,
                    patient_id=change.patient_id,
                    source_system=source_system,
                    overview=overview,
                )

    async def ExportOverview(self, request: overview_pb2.ExportOverviewRequest, context: aio.ServicerContext):
        tenant = await self._authorized_read(request)
        today = self.today()
        entries = compile_overview(await self.lists.current(tenant, request.patient_id), today)
        bundle = fhir.overview_bundle(patient_id=request.patient_id, municipality=tenant, entries=entries, today=today)
        return overview_pb2.ExportOverviewResponse(
            fhir_json=json.dumps(bundle, ensure_ascii=False), content_type=FHIR_CONTENT_TYPE
        )

    async def ListSubmissions(self, request: overview_pb2.ListSubmissionsRequest, context: aio.ServicerContext):
        caller = current_principal()
        violations: list[FieldViolation] = []
        tenant = self._patient(request, caller, violations)
        if request.page_size < 0:
            violations.append(FieldViolation("page_size", "must not be negative"))
        if len(request.source_system) > 200:
            violations.append(FieldViolation("source_system", "at most 200 characters"))
        raise_if_any(violations)
        await self.access.authorize(tenant, request.patient_id, DataKind.SERVICES_OVERVIEW, Action.READ)
        source = request.source_system or caller.client_id
        size = min(request.page_size or DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)
        versions, token = await self.lists.history(tenant, request.patient_id, source, size, request.page_token)
        return overview_pb2.ListSubmissionsResponse(
            submissions=[
                overview_pb2.Submission(
                    source_system=item.source.source_system,
                    version=item.version,
                    submitted_at=mappers.timestamp(item.source.updated_at),
                    services=[mappers.service_message(service) for service in item.source.services],
                    sequence=item.sequence,
                )
                for item in versions
            ],
            next_page_token=token,
        )

    async def _overview(self, tenant: str, patient_id: str) -> overview_pb2.GetOverviewResponse:
        today = self.today()
        entries = compile_overview(await self.lists.current(tenant, patient_id), today)
        active = sum(1 for entry in entries if entry.status is ServiceStatus.ACTIVE)
        return mappers.overview_message(patient_id, entries, today, active)

    async def _authorized_read(self, request) -> str:
        violations: list[FieldViolation] = []
        tenant = self._patient(request, current_principal(), violations)
        raise_if_any(violations)
        await self.access.authorize(tenant, request.patient_id, DataKind.SERVICES_OVERVIEW, Action.READ)
        return tenant

    def _patient(self, request, caller: Principal, violations: list[FieldViolation]) -> str:
        tenant = requested_tenant(request.tenant, caller, violations)
        check_patient_id(request.patient_id, violations, check_date=self.check_birth_dates)
        return tenant
