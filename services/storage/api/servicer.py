"""The StorageService servicer: validates, checks the tenant, and calls the record store."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc import aio
from samhandling.storage.v1 import storage_pb2, storage_pb2_grpc

from services.platform import feeds
from services.platform.errors import FieldViolation
from services.platform.identifiers import municipality_number_problem
from services.platform.request_context import current_principal
from services.storage.api import mappers
from services.storage.domain.ports import ChangeSubscriptions, RecordStore
from services.storage.domain.records import (
    MAX_WATCH_KINDS,
    RecordRef,
    RecordValidator,
    check_kind,
    check_version,
    raise_if_any,
)
from services.storage.domain.tenancy import require_own_tenant

# Rows read per change-feed query: bounds a watcher's memory to this many payloads.
WATCH_BATCH = 100


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(
        self,
        store: RecordStore,
        changes: ChangeSubscriptions,
        validator: RecordValidator,
        page_byte_budget: int,
        watch_poll_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.changes = changes
        self.validator = validator
        # Payload bytes per page, below the largest message we may send.
        self.page_byte_budget = page_byte_budget
        self.watch_poll_seconds = watch_poll_seconds

    async def PutRecord(self, request: storage_pb2.PutRecordRequest, context: aio.ServicerContext):
        caller = current_principal()
        command = mappers.put_command(request, caller)
        self.validator.put(command)
        require_own_tenant(caller, request.tenant)
        result = await self.store.put(command)
        return storage_pb2.PutRecordResponse(record=mappers.record_message(result.record), replayed=result.replayed)

    async def GetRecord(self, request: storage_pb2.GetRecordRequest, context: aio.ServicerContext):
        violations = self.validator.ref(request.tenant, request.patient_id, request.kind, request.key)
        version = request.version if request.HasField("version") else None
        if version is not None:
            check_version(version, "version", violations)
        raise_if_any(violations)
        require_own_tenant(current_principal(), request.tenant)
        record = await self.store.get(_ref(request), version)
        return storage_pb2.GetRecordResponse(record=mappers.record_message(record))

    async def ListRecordVersions(self, request: storage_pb2.ListRecordVersionsRequest, context: aio.ServicerContext):
        raise_if_any(self.validator.ref(request.tenant, request.patient_id, request.kind, request.key))
        size = mappers.page_size(request.page_size)
        after = mappers.version_after(request.page_token)
        require_own_tenant(current_principal(), request.tenant)
        records = await self.store.versions(_ref(request), after, size + 1)
        page, more = mappers.fit_page(records, size, self.page_byte_budget)
        return storage_pb2.ListRecordVersionsResponse(
            records=[mappers.record_message(r) for r in page],
            next_page_token=mappers.encode_page_token(page[-1].version) if more else "",
        )

    async def ListRecords(self, request: storage_pb2.ListRecordsRequest, context: aio.ServicerContext):
        violations: list[FieldViolation] = []
        self.validator.scope(request.tenant, request.patient_id, request.kind, violations)
        raise_if_any(violations)
        size = mappers.page_size(request.page_size)
        after = mappers.key_after(request.page_token)
        require_own_tenant(current_principal(), request.tenant)
        records = await self.store.latest(
            request.tenant, request.patient_id, request.kind, after, size + 1, descending=request.descending
        )
        page, more = mappers.fit_page(records, size, self.page_byte_budget)
        return storage_pb2.ListRecordsResponse(
            records=[mappers.record_message(r) for r in page],
            next_page_token=mappers.encode_page_token(page[-1].ref.key) if more else "",
        )

    async def Watch(
        self, request: storage_pb2.WatchRequest, context: aio.ServicerContext
    ) -> AsyncIterator[storage_pb2.WatchResponse]:
        violations: list[FieldViolation] = []
        if problem := municipality_number_problem(request.tenant):
            violations.append(FieldViolation("tenant", problem))
        if request.from_sequence < 0:
            violations.append(FieldViolation("from_sequence", "must not be negative"))
        if len(request.kinds) > MAX_WATCH_KINDS:
            violations.append(FieldViolation("kinds", f"at most {MAX_WATCH_KINDS} kinds"))
        for index, kind in enumerate(request.kinds[:MAX_WATCH_KINDS]):
            check_kind(kind, f"kinds[{index}]", violations)
        raise_if_any(violations)
        caller = current_principal()
        require_own_tenant(caller, request.tenant)

        kinds = list(request.kinds)
        changes = feeds.follow(
            tenant=request.tenant,
            after=request.from_sequence,
            read=lambda after, limit: self.store.changes_after(request.tenant, after, kinds, limit),
            position=lambda change: change.sequence,
            notifier=self.changes,
            caller=caller,
            batch=WATCH_BATCH,
            poll_seconds=self.watch_poll_seconds,
        )
        async for change in changes:
            yield storage_pb2.WatchResponse(record=mappers.record_message(change))


def _ref(request: storage_pb2.GetRecordRequest | storage_pb2.ListRecordVersionsRequest) -> RecordRef:
    return RecordRef(request.tenant, request.patient_id, request.kind, request.key)
