"""The AccessService servicer: validates requests, applies the access and consent rules, and answers
from the access store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from grpc import aio
from samhandling.access.v1 import access_pb2, access_pb2_grpc

from services.access.adapters.access_store import PostgresAccessStore
from services.access.adapters.decision_batcher import Batcher
from services.access.api import mappers
from services.access.domain.access_log import ChainedEntry, ConsentChange
from services.access.domain.consent import (
    ConsentCommand,
    registration_for,
    require_consent_reader,
    require_log_reader,
    require_privacy_officer,
    require_tenant,
)
from services.access.domain.decisions import MESSAGES, AccessQuery, Action, DataKind, Decision, Reason
from services.platform import feeds
from services.platform.errors import FieldViolation, PermissionDenied, raise_if_any
from services.platform.notifications import ChangeNotifier
from services.platform.principal import Principal
from services.platform.request_context import current_principal
from services.platform.requests import check_hpr_number, check_patient_id, feed_request, requested_tenant
from services.platform.tenants import TenantTable

FOLLOW_UP_BATCH = 100
AUTHORIZABLE_KINDS = (DataKind.SERVICES_OVERVIEW, DataKind.VITAL_SIGNS)


class AccessServiceServicer(access_pb2_grpc.AccessServiceServicer):
    def __init__(
        self,
        store: PostgresAccessStore,
        follow_ups: ChangeNotifier,
        tenants: TenantTable,
        *,
        check_birth_dates: bool,
        poll_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.follow_ups = follow_ups
        self.tenants = tenants
        self.check_birth_dates = check_birth_dates
        self.poll_seconds = poll_seconds
        self.decisions: Batcher[AccessQuery, tuple[Decision, ChainedEntry]] = Batcher(store.decide)

    async def Authorize(self, request: access_pb2.AuthorizeRequest, context: aio.ServicerContext):
        caller = current_principal()
        violations: list[FieldViolation] = []
        tenant = requested_tenant(request.tenant, caller, violations)
        check_patient_id(request.patient_id, violations, check_date=self.check_birth_dates)
        if request.data_kind not in AUTHORIZABLE_KINDS:
            violations.append(
                FieldViolation("data_kind", "must be DATA_KIND_SERVICES_OVERVIEW or DATA_KIND_VITAL_SIGNS")
            )
        if request.action not in (Action.READ, Action.WRITE):
            violations.append(FieldViolation("action", "must be ACTION_READ or ACTION_WRITE"))
        raise_if_any(violations)
        if not self.tenants.organisations_of(tenant):
            # Not a collaboration area: there is no data and no data controller whose log could hold this.
            raise PermissionDenied(Reason.TENANT_MISMATCH, MESSAGES[Reason.TENANT_MISMATCH])
        query = AccessQuery(
            caller, tenant, request.patient_id, DataKind(request.data_kind), Action(request.action), request.feed
        )
        decision, logged = await self.decisions.submit(tenant, query)
        if not decision.allowed:
            assert decision.reason is not None
            raise PermissionDenied(decision.reason, MESSAGES[decision.reason], {"decision_id": logged.entry.entry_id})
        return access_pb2.AuthorizeResponse(
            decision_id=logged.entry.entry_id,
            log_sequence=logged.sequence,
            tenant=tenant,
            purpose_of_use=query.purpose_of_use or "",
            break_the_glass=decision.break_the_glass,
            overrode_objection=decision.overrode_objection,
            decided_at=mappers.timestamp(logged.entry.decided_at),
        )

    async def RegisterObjection(self, request: access_pb2.RegisterObjectionRequest, context: aio.ServicerContext):
        result = await self._change(request, ConsentChange.OBJECTION_REGISTERED)
        objection = mappers.objection_message(result.objection) if result.objection else None
        return access_pb2.RegisterObjectionResponse(objection=objection, changed=result.changed)

    async def WithdrawObjection(self, request: access_pb2.WithdrawObjectionRequest, context: aio.ServicerContext):
        result = await self._change(request, ConsentChange.OBJECTION_WITHDRAWN)
        return access_pb2.WithdrawObjectionResponse(changed=result.changed)

    async def BlockPractitioner(self, request: access_pb2.BlockPractitionerRequest, context: aio.ServicerContext):
        result = await self._change(request, ConsentChange.PRACTITIONER_BLOCKED, request.hpr_number)
        block = mappers.block_message(result.block) if result.block else None
        return access_pb2.BlockPractitionerResponse(block=block, changed=result.changed)

    async def UnblockPractitioner(self, request: access_pb2.UnblockPractitionerRequest, context: aio.ServicerContext):
        result = await self._change(request, ConsentChange.PRACTITIONER_UNBLOCKED, request.hpr_number)
        return access_pb2.UnblockPractitionerResponse(changed=result.changed)

    async def GetConsent(self, request: access_pb2.GetConsentRequest, context: aio.ServicerContext):
        caller, tenant = self._patient_request(request)
        await self._refuse_other_tenant(caller, tenant, request.patient_id, Action.READ)
        require_consent_reader(caller, tenant, request.patient_id)
        objection, blocks = await self.store.consent(tenant, request.patient_id)
        return access_pb2.GetConsentResponse(
            objection=mappers.objection_message(objection) if objection else None,
            blocks=[mappers.block_message(block) for block in blocks],
        )

    async def ListAccessLog(self, request: access_pb2.ListAccessLogRequest, context: aio.ServicerContext):
        caller, tenant = self._patient_request(request)
        size = mappers.page_size(request.page_size)
        before = mappers.decode_page_token(request.page_token)
        await self._refuse_other_tenant(caller, tenant, request.patient_id, Action.READ)
        require_log_reader(caller, tenant, request.patient_id)
        entries = await self.store.patient_log(tenant, request.patient_id, before, size + 1)
        page, more = entries[:size], len(entries) > size
        return access_pb2.ListAccessLogResponse(
            entries=[mappers.entry_message(item) for item in page],
            next_page_token=mappers.encode_page_token(page[-1].sequence) if more else "",
        )

    async def VerifyAccessLog(self, request: access_pb2.VerifyAccessLogRequest, context: aio.ServicerContext):
        caller = current_principal()
        violations: list[FieldViolation] = []
        tenant = requested_tenant(request.tenant, caller, violations)
        raise_if_any(violations)
        # The verdict reveals no patient data (counts, positions and hashes), so any caller of the
        # tenant may ask for it: anyone holding the log should be able to check it.
        require_tenant(caller, tenant)
        verification = await self.store.verify(tenant)
        return mappers.verification_message(verification, datetime.now(UTC))

    async def WatchFollowUps(
        self, request: access_pb2.WatchFollowUpsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[access_pb2.WatchFollowUpsResponse]:
        caller, tenant = feed_request(request)
        require_privacy_officer(caller, tenant)
        entries = feeds.follow(
            tenant=tenant,
            after=request.from_sequence,
            read=lambda after, limit: self.store.follow_ups(tenant, after, limit),
            position=lambda item: item.sequence,
            notifier=self.follow_ups,
            caller=caller,
            batch=FOLLOW_UP_BATCH,
            poll_seconds=self.poll_seconds,
        )
        async for item in entries:
            yield access_pb2.WatchFollowUpsResponse(entry=mappers.entry_message(item))

    def _patient_request(self, request) -> tuple[Principal, str]:
        caller = current_principal()
        violations: list[FieldViolation] = []
        tenant = requested_tenant(request.tenant, caller, violations)
        check_patient_id(request.patient_id, violations, check_date=self.check_birth_dates)
        if getattr(request, "hpr_number", None) is not None:
            check_hpr_number(request.hpr_number, violations)
        raise_if_any(violations)
        return caller, tenant

    async def _refuse_other_tenant(self, caller: Principal, tenant: str, patient_id: str, action: Action) -> None:
        """A caller reaches only its own tenant (phase 1). An attempt at another collaboration area's patient
        is decided and logged there, as Authorize does it, so that its privacy officer and the patient see
        who tried; the answer is the same whether or not the area knows the patient."""
        if caller.tenant is not None and caller.tenant == tenant:
            return
        if not self.tenants.organisations_of(tenant):
            raise PermissionDenied(Reason.TENANT_MISMATCH, MESSAGES[Reason.TENANT_MISMATCH])
        query = AccessQuery(caller, tenant, patient_id, DataKind.CONSENT, action)
        decision, logged = await self.decisions.submit(tenant, query)
        reason = decision.reason or Reason.TENANT_MISMATCH
        raise PermissionDenied(reason, MESSAGES[reason], {"decision_id": logged.entry.entry_id})

    async def _change(self, request, change: ConsentChange, hpr_number: str | None = None):
        caller, tenant = self._patient_request(request)
        await self._refuse_other_tenant(caller, tenant, request.patient_id, Action.WRITE)
        registration = registration_for(
            caller, tenant, request.patient_id, request.documented_request, change, datetime.now(UTC)
        )
        command = ConsentCommand(tenant, request.patient_id, change, registration, hpr_number)
        result, _ = await self.store.change_consent(command)
        return result
