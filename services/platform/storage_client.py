"""The storage service as the overview and news2 services see it: typed calls with the caller's token
forwarded, and the storage's errors relayed as the same domain errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from grpc import aio
from samhandling.storage.v1 import storage_pb2, storage_pb2_grpc

from services.platform.peer_errors import domain_error


@dataclass(frozen=True)
class StoredRecord:
    tenant: str
    patient_id: str
    kind: str
    key: str
    version: int
    data: bytes
    content_type: str
    source_system: str
    organisation_number: str
    author_hpr_number: str | None
    recorded_at: datetime
    sequence: int


@dataclass(frozen=True)
class PutResult:
    record: StoredRecord
    replayed: bool


class StorageClient:
    def __init__(self, channel: aio.Channel, *, streams: aio.Channel | None = None) -> None:
        """`streams`: where Watch streams go (default: `channel`)."""
        self.stub = storage_pb2_grpc.StorageServiceStub(channel)
        self.streams = storage_pb2_grpc.StorageServiceStub(streams) if streams is not None else self.stub

    async def put(
        self, tenant: str, patient_id: str, kind: str, key: str, data: bytes, content_type: str, idempotency_key: str
    ) -> PutResult:
        request = storage_pb2.PutRecordRequest(
            tenant=tenant,
            patient_id=patient_id,
            kind=kind,
            key=key,
            payload=storage_pb2.Payload(data=data, content_type=content_type),
            idempotency_key=idempotency_key,
        )
        try:
            response = await self.stub.PutRecord(request)
        except aio.AioRpcError as error:
            raise domain_error(error, "storage") from None
        return PutResult(_record(response.record), response.replayed)

    async def get(self, tenant: str, patient_id: str, kind: str, key: str) -> StoredRecord:
        request = storage_pb2.GetRecordRequest(tenant=tenant, patient_id=patient_id, kind=kind, key=key)
        try:
            response = await self.stub.GetRecord(request)
        except aio.AioRpcError as error:
            raise domain_error(error, "storage") from None
        return _record(response.record)

    async def latest(self, tenant: str, patient_id: str, kind: str) -> list[StoredRecord]:
        """The latest version of every record of this kind for the patient, all pages."""
        records: list[StoredRecord] = []
        token = ""
        while True:
            page, token = await self.page(tenant, patient_id, kind, page_size=1000, page_token=token, descending=False)
            records += page
            if not token:
                return records

    async def page(
        self, tenant: str, patient_id: str, kind: str, *, page_size: int, page_token: str, descending: bool
    ) -> tuple[list[StoredRecord], str]:
        """One page of the latest version of each record, by key."""
        request = storage_pb2.ListRecordsRequest(
            tenant=tenant,
            patient_id=patient_id,
            kind=kind,
            page_size=page_size,
            page_token=page_token,
            descending=descending,
        )
        try:
            response = await self.stub.ListRecords(request)
        except aio.AioRpcError as error:
            raise domain_error(error, "storage") from None
        return [_record(record) for record in response.records], response.next_page_token

    async def versions(
        self, tenant: str, patient_id: str, kind: str, key: str, page_size: int, page_token: str
    ) -> tuple[list[StoredRecord], str]:
        request = storage_pb2.ListRecordVersionsRequest(
            tenant=tenant, patient_id=patient_id, kind=kind, key=key, page_size=page_size, page_token=page_token
        )
        try:
            response = await self.stub.ListRecordVersions(request)
        except aio.AioRpcError as error:
            raise domain_error(error, "storage") from None
        return [_record(record) for record in response.records], response.next_page_token

    async def watch(self, tenant: str, after: int, kinds: list[str]) -> AsyncIterator[StoredRecord]:
        call = self.streams.Watch(storage_pb2.WatchRequest(tenant=tenant, from_sequence=after, kinds=kinds))
        try:
            async for response in call:
                yield _record(response.record)
        except aio.AioRpcError as error:
            raise domain_error(error, "storage") from None
        finally:
            call.cancel()


def _record(record: storage_pb2.Record) -> StoredRecord:
    return StoredRecord(
        tenant=record.tenant,
        patient_id=record.patient_id,
        kind=record.kind,
        key=record.key,
        version=record.version,
        data=record.payload.data,
        content_type=record.payload.content_type,
        source_system=record.provenance.source_system,
        organisation_number=record.provenance.organisation_number,
        author_hpr_number=record.provenance.author_hpr_number or None,
        recorded_at=record.provenance.recorded_at.ToDatetime(tzinfo=UTC),
        sequence=record.sequence,
    )
