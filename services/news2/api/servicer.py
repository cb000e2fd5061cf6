"""The News2Service servicer: validates, asks the access service, scores, and keeps assessments in the
storage service. Every patient-data call is decided (and logged) by the access service before any
patient data is read or written; nothing is stored when validation or the decision fails."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import TypeVar

from grpc import aio
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc

from services.news2.adapters.assessments import LOOKBACK_PAGE_SIZE, Assessments, is_assessment_id
from services.news2.api import mappers
from services.news2.domain import fhir
from services.news2.domain.assessments import (
    Assessment,
    AssessmentTrend,
    NewAssessment,
    alert_at,
    predecessor,
    trend_against,
)
from services.news2.domain.scoring import PARAMETERS, RawVitalSigns, VitalSigns, read_vital_signs, score
from services.news2.domain.trend import alert_reasons, trend
from services.platform.access_client import (
    AccessClient,
    Action,
    DataKind,
    require_feed_subscriber,
)
from services.platform.errors import UNREADABLE_PAYLOAD, DataLoss, FieldViolation, InvalidArgument, raise_if_any
from services.platform.feeds import StreamDrain
from services.platform.logs import describe_error
from services.platform.request_context import current_principal
from services.platform.requests import check_idempotency_key, check_patient_id, feed_request, requested_tenant

VITAL_SIGNS_PREFIX = "vital_signs."
# What decoding a stored assessment raises when its bytes are not one this service wrote.
UNREADABLE = (DataLoss, *UNREADABLE_PAYLOAD)
FHIR_CONTENT_TYPE = "application/fhir+json; fhirVersion=4.0"

Item = TypeVar("Item")
log = logging.getLogger(__name__)


class News2ServiceServicer(news2_pb2_grpc.News2ServiceServicer):
    def __init__(
        self, assessments: Assessments, access: AccessClient, drain: StreamDrain, *, check_birth_dates: bool
    ) -> None:
        self.assessments = assessments
        self.access = access
        self.drain = drain
        self.check_birth_dates = check_birth_dates

    async def ScoreVitalSigns(self, request: news2_pb2.ScoreVitalSignsRequest, context: aio.ServicerContext):
        violations: list[FieldViolation] = []
        raw = mappers.raw_vital_signs(request.vital_signs)
        vital_signs = _read(raw, violations)
        for name in _absent(raw):
            violations.append(FieldViolation(VITAL_SIGNS_PREFIX + name, "required for a NEWS2 score"))
        raise_if_any(violations)
        assert vital_signs is not None
        return news2_pb2.ScoreVitalSignsResponse(score=mappers.score_message(score(vital_signs)))

    async def RecordVitalSigns(self, request: news2_pb2.RecordVitalSignsRequest, context: aio.ServicerContext):
        caller = current_principal()
        violations: list[FieldViolation] = []
        tenant = requested_tenant(request.tenant, caller, violations)
        check_patient_id(request.patient_id, violations, check_date=self.check_birth_dates)
        check_idempotency_key(request.idempotency_key, violations)
        measured_at, vital_signs, raw = None, None, RawVitalSigns()
        if not request.HasField("vital_signs"):
            violations.append(FieldViolation("vital_signs", "required"))
        else:
            raw = mappers.raw_vital_signs(request.vital_signs)
            measured_at = mappers.measured_at(request.vital_signs, datetime.now(UTC), violations)
            vital_signs = _read(raw, violations)
            if len(_absent(raw)) == len(PARAMETERS):
                violations.append(FieldViolation("vital_signs", "must hold at least one measured parameter"))
        raise_if_any(violations)
        assert measured_at is not None and vital_signs is not None

        await self.access.authorize(tenant, request.patient_id, DataKind.VITAL_SIGNS, Action.WRITE)

        news2 = score(vital_signs) if vital_signs.is_complete else None
        change = None
        if news2 is not None:
            previous = await self.assessments.previous_complete(tenant, request.patient_id, measured_at)
            if previous is not None and previous.score is not None:
                since = trend(news2, previous.score)
                change = AssessmentTrend(previous.assessment_id, since) if since is not None else None
        new = NewAssessment(
            tenant=tenant,
            patient_id=request.patient_id,
            measured_at=measured_at,
            measured=raw,
            as_scored=vital_signs,
            score=news2,
            trend=change,
            alert_reasons=alert_reasons(news2, change.trend if change else None) if news2 is not None else (),
        )
        stored, replayed = await self.assessments.save(new, caller, request.idempotency_key)
        return news2_pb2.RecordVitalSignsResponse(
            assessment=mappers.assessment_message(stored, stored.trend), replayed=replayed
        )

    async def ListAssessments(self, request: news2_pb2.ListAssessmentsRequest, context: aio.ServicerContext):
        caller = current_principal()
        violations: list[FieldViolation] = []
        tenant = requested_tenant(request.tenant, caller, violations)
        check_patient_id(request.patient_id, violations, check_date=self.check_birth_dates)
        size = mappers.page_size(request.page_size, violations)
        raise_if_any(violations)

        await self.access.authorize(tenant, request.patient_id, DataKind.VITAL_SIGNS, Action.READ)

        page, next_token = await self.assessments.page(tenant, request.patient_id, size, request.page_token)
        trends = await self._trends(tenant, request.patient_id, page, next_token)
        return news2_pb2.ListAssessmentsResponse(
            assessments=[
                mappers.assessment_message(assessment, trend) for assessment, trend in zip(page, trends, strict=True)
            ],
            next_page_token=next_token,
        )

    async def _trends(
        self, tenant: str, patient_id: str, page: list[Assessment], next_token: str
    ) -> list[AssessmentTrend | None]:
        """Each complete assessment's trend against the previous complete one, recomputed from its
        neighbours (so an earlier measurement recorded later is taken into account). The oldest
        complete one on the page may need later pages to find its predecessor; the others then share
        it or have theirs on the page."""
        chain = list(page)
        last_complete = next((i for i in reversed(range(len(page))) if page[i].complete), None)
        token = next_token
        while last_complete is not None and token and predecessor(chain, last_complete) is None:
            more, token = await self.assessments.page(tenant, patient_id, LOOKBACK_PAGE_SIZE, token)
            chain += more
        return [trend_against(chain[i], predecessor(chain, i)) for i in range(len(page))]

    async def WatchAlerts(
        self, request: news2_pb2.WatchAlertsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[news2_pb2.WatchAlertsResponse]:
        caller, tenant = feed_request(request)
        require_feed_subscriber(caller, tenant)

        feed = self.drain.relay(self.assessments.watch(tenant, request.from_sequence))
        async with aclosing(feed) as assessments:
            async for recorded in assessments:
                if not recorded.complete:
                    continue  # no total: neither alerts nor changes a trend
                try:
                    history = await self.assessments.history(tenant, recorded.patient_id)
                    alert = alert_at(recorded, history)
                except UNREADABLE as error:
                    # One of the patient's records cannot be read (written past this service, straight into
                    # storage): this alert is passed over, so that it cannot stop the tenant's alerts for good.
                    log.error(
                        "alert at sequence %d skipped, history unreadable: %s", recorded.sequence, describe_error(error)
                    )
                    continue
                if alert is None:
                    continue
                if await self.access.may_deliver(tenant, recorded.patient_id, DataKind.VITAL_SIGNS):
                    yield mappers.alert_message(alert)

    async def ExportAssessment(self, request: news2_pb2.ExportAssessmentRequest, context: aio.ServicerContext):
        caller = current_principal()
        violations: list[FieldViolation] = []
        tenant = requested_tenant(request.tenant, caller, violations)
        check_patient_id(request.patient_id, violations, check_date=self.check_birth_dates)
        if not is_assessment_id(request.assessment_id):
            violations.append(FieldViolation("assessment_id", "must be an assessment id returned by this service"))
        raise_if_any(violations)

        await self.access.authorize(tenant, request.patient_id, DataKind.VITAL_SIGNS, Action.READ)

        assessment = await self.assessments.get(tenant, request.patient_id, request.assessment_id)
        bundle = fhir.assessment_bundle(
            assessment_id=assessment.assessment_id,
            patient_id=assessment.patient_id,
            measured_at=assessment.measured_at,
            recorded_at=assessment.provenance.recorded_at,
            measured=assessment.as_scored,
            as_sent=assessment.measured,
            score=assessment.score,
            performer_organisation=assessment.provenance.organisation_number or None,
            performer_hpr_number=assessment.provenance.author_hpr_number,
        )
        return news2_pb2.ExportAssessmentResponse(
            fhir_json=json.dumps(bundle, ensure_ascii=False), content_type=FHIR_CONTENT_TYPE
        )


def _read(raw: RawVitalSigns, violations: list[FieldViolation]) -> VitalSigns | None:
    """The validated, rounded values; every bad field is added to `violations`."""
    try:
        return read_vital_signs(raw, field_prefix=VITAL_SIGNS_PREFIX)
    except InvalidArgument as error:
        violations.extend(error.violations)
        return None


def _absent(raw: RawVitalSigns) -> list[str]:
    """The parameters the caller did not send (consciousness left UNSPECIFIED is not assessed)."""
    return [
        name
        for name in PARAMETERS
        if (raw.consciousness == 0 if name == "consciousness" else getattr(raw, name) is None)
    ]
