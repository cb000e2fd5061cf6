"""The storage service over real gRPC on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from samhandling.storage.v1 import storage_pb2

from services.platform.embedded_database import ADMIN_ROLE, EmbeddedPostgres
from tests.support import BAERUM, BODO, bearer, person_number

KIND = "test.note"


def put_request(patient: str, *, key: str = "k", data: bytes = b'{"n": 1}', tenant: str = BODO, **fields):
    return storage_pb2.PutRecordRequest(
        tenant=tenant,
        patient_id=patient,
        kind=fields.pop("kind", KIND),
        key=key,
        payload=storage_pb2.Payload(data=data, content_type=fields.pop("content_type", "application/json")),
        idempotency_key=fields.pop("idempotency_key", str(uuid.uuid4())),
        **fields,
    )


def details(error: grpc.aio.AioRpcError, kind):
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    found = []
    for detail in status.details:
        message = kind()
        if detail.Unpack(message):
            found.append(message)
    return found


@pytest.fixture
def token(mint) -> str:
    return mint(BODO, hpr_number="1234567", client_id="ehr-a")


async def test_put_creates_version_one_then_next_versions_with_provenance(storage, token):
    patient = person_number()
    first = await storage.PutRecord(put_request(patient, data=b"v1"), metadata=bearer(token))
    second = await storage.PutRecord(put_request(patient, data=b"v2"), metadata=bearer(token))

    assert (first.record.version, second.record.version) == (1, 2)
    assert not first.replayed
    assert second.record.sequence > first.record.sequence
    provenance = second.record.provenance
    assert (provenance.source_system, provenance.organisation_number, provenance.author_hpr_number) == (
        "ehr-a",
        "972418013",
        "1234567",
    )
    assert provenance.recorded_at.seconds > 0


async def test_get_returns_latest_or_the_version_asked_for(storage, token):
    patient = person_number()
    for data in (b"one", b"two", b"three"):
        await storage.PutRecord(put_request(patient, data=data), metadata=bearer(token))
    ref = dict(tenant=BODO, patient_id=patient, kind=KIND, key="k")

    latest = await storage.GetRecord(storage_pb2.GetRecordRequest(**ref), metadata=bearer(token))
    second = await storage.GetRecord(storage_pb2.GetRecordRequest(**ref, version=2), metadata=bearer(token))

    assert (latest.record.version, latest.record.payload.data) == (3, b"three")
    assert (second.record.version, second.record.payload.data) == (2, b"two")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await storage.GetRecord(storage_pb2.GetRecordRequest(**ref, version=4), metadata=bearer(token))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_history_lists_every_version_oldest_first_in_pages(storage, token):
    patient = person_number()
    for index in range(5):
        await storage.PutRecord(put_request(patient, data=f"v{index + 1}".encode()), metadata=bearer(token))

    seen, page_token = [], ""
    while True:
        page = await storage.ListRecordVersions(
            storage_pb2.ListRecordVersionsRequest(
                tenant=BODO, patient_id=patient, kind=KIND, key="k", page_size=2, page_token=page_token
            ),
            metadata=bearer(token),
        )
        seen.extend((r.version, r.payload.data) for r in page.records)
        page_token = page.next_page_token
        if not page_token:
            break

    assert seen == [(n, f"v{n}".encode()) for n in range(1, 6)]


async def test_list_records_returns_the_latest_version_of_each_key(storage, token):
    patient = person_number()
    await storage.PutRecord(put_request(patient, key="source-b", data=b"b1"), metadata=bearer(token))
    await storage.PutRecord(put_request(patient, key="source-a", data=b"a1"), metadata=bearer(token))
    await storage.PutRecord(put_request(patient, key="source-b", data=b"b2"), metadata=bearer(token))
    await storage.PutRecord(put_request(patient, key="other", kind="test.other"), metadata=bearer(token))

    listed = await storage.ListRecords(
        storage_pb2.ListRecordsRequest(tenant=BODO, patient_id=patient, kind=KIND), metadata=bearer(token)
    )

    assert [(r.key, r.version, r.payload.data) for r in listed.records] == [
        ("source-a", 1, b"a1"),
        ("source-b", 2, b"b2"),
    ]


async def test_same_idempotency_key_twice_writes_one_record(storage, token):
    patient = person_number()
    request = put_request(patient, idempotency_key="retry-me")

    first = await storage.PutRecord(request, metadata=bearer(token))
    again = await storage.PutRecord(request, metadata=bearer(token))

    assert again.replayed and not first.replayed
    assert again.record == first.record
    history = await storage.ListRecordVersions(
        storage_pb2.ListRecordVersionsRequest(tenant=BODO, patient_id=patient, kind=KIND, key="k"),
        metadata=bearer(token),
    )
    assert len(history.records) == 1


async def test_concurrent_retries_with_one_idempotency_key_write_once(storage, token):
    patient = person_number()
    request = put_request(patient, idempotency_key=str(uuid.uuid4()))

    results = await asyncio.gather(*(storage.PutRecord(request, metadata=bearer(token)) for _ in range(8)))

    assert len({r.record.sequence for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1


async def test_same_idempotency_key_with_other_content_is_rejected_and_writes_nothing(storage, token):
    patient = person_number()
    await storage.PutRecord(put_request(patient, idempotency_key="once", data=b"a"), metadata=bearer(token))

    with pytest.raises(grpc.aio.AioRpcError) as rejected:
        await storage.PutRecord(put_request(patient, idempotency_key="once", data=b"b"), metadata=bearer(token))

    assert rejected.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert [info.reason for info in details(rejected.value, error_details_pb2.ErrorInfo)] == ["IDEMPOTENCY_KEY_REUSED"]
    latest = await storage.GetRecord(
        storage_pb2.GetRecordRequest(tenant=BODO, patient_id=patient, kind=KIND, key="k"), metadata=bearer(token)
    )
    assert (latest.record.version, latest.record.payload.data) == (1, b"a")


async def test_idempotency_keys_are_scoped_to_the_source_system(storage, mint):
    patient = person_number()
    one, other = mint(BODO, client_id="ehr-one"), mint(BODO, client_id="ehr-two")

    first = await storage.PutRecord(put_request(patient, idempotency_key="shared"), metadata=bearer(one))
    second = await storage.PutRecord(put_request(patient, idempotency_key="shared"), metadata=bearer(other))

    assert not second.replayed and second.record.version == first.record.version + 1


async def test_expected_version_mismatch_is_aborted_and_writes_nothing(storage, token):
    patient = person_number()
    await storage.PutRecord(put_request(patient, expected_version=0), metadata=bearer(token))
    await storage.PutRecord(put_request(patient, expected_version=1), metadata=bearer(token))

    for stale in (0, 1, 5):
        with pytest.raises(grpc.aio.AioRpcError) as conflict:
            await storage.PutRecord(put_request(patient, expected_version=stale), metadata=bearer(token))
        assert conflict.value.code() == grpc.StatusCode.ABORTED
        (info,) = details(conflict.value, error_details_pb2.ErrorInfo)
        assert (info.reason, info.metadata["current_version"]) == ("VERSION_CONFLICT", "2")

    latest = await storage.GetRecord(
        storage_pb2.GetRecordRequest(tenant=BODO, patient_id=patient, kind=KIND, key="k"), metadata=bearer(token)
    )
    assert latest.record.version == 2


async def test_expected_version_on_a_missing_record_is_aborted(storage, token):
    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await storage.PutRecord(put_request(person_number(), expected_version=3), metadata=bearer(token))
    assert conflict.value.code() == grpc.StatusCode.ABORTED


async def test_concurrent_writers_get_distinct_consecutive_versions(storage, token):
    patient = person_number()

    results = await asyncio.gather(
        *(storage.PutRecord(put_request(patient, data=str(n).encode()), metadata=bearer(token)) for n in range(10))
    )

    assert sorted(r.record.version for r in results) == list(range(1, 11))


@pytest.mark.parametrize(
    ("fields", "violated"),
    [
        ({"tenant": "18O4"}, ["tenant"]),
        ({"patient_id": "12345678901"}, ["patient_id"]),
        ({"patient_id": ""}, ["patient_id"]),
        ({"kind": "Not A Kind"}, ["kind"]),
        ({"key": ""}, ["key"]),
        ({"key": "has space"}, ["key"]),
        ({"idempotency_key": ""}, ["idempotency_key"]),
        ({"content_type": "json"}, ["payload.content_type"]),
        ({"expected_version": -1}, ["expected_version"]),
        ({"tenant": "x", "patient_id": "1", "kind": "", "key": ""}, ["tenant", "patient_id", "kind", "key"]),
    ],
)
async def test_malformed_put_is_invalid_argument_naming_the_field_and_writes_nothing(storage, token, fields, violated):
    patient = fields.pop("patient_id", person_number())
    request = put_request(
        patient,
        **{k: v for k, v in fields.items() if k not in ("tenant", "key")},
        tenant=fields.get("tenant", BODO),
        key=fields.get("key", "k"),
    )

    with pytest.raises(grpc.aio.AioRpcError) as rejected:
        await storage.PutRecord(request, metadata=bearer(token))

    assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (bad_request,) = details(rejected.value, error_details_pb2.BadRequest)
    assert [v.field for v in bad_request.field_violations] == violated
    if "patient_id" not in violated and "tenant" not in violated:
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await storage.GetRecord(
                storage_pb2.GetRecordRequest(tenant=BODO, patient_id=patient, kind=KIND, key="k"),
                metadata=bearer(token),
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_payload_over_the_limit_is_invalid_argument(storage, token, settings):
    patient = person_number()
    with pytest.raises(grpc.aio.AioRpcError) as rejected:
        await storage.PutRecord(
            put_request(patient, data=b"x" * (settings.max_payload_bytes + 1)), metadata=bearer(token)
        )
    assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (bad_request,) = details(rejected.value, error_details_pb2.BadRequest)
    assert [v.field for v in bad_request.field_violations] == ["payload.data"]

    at_limit = await storage.PutRecord(
        put_request(patient, data=b"x" * settings.max_payload_bytes), metadata=bearer(token)
    )
    assert at_limit.record.version == 1


async def test_a_tenant_reads_nothing_written_in_another(storage, mint):
    patient = person_number()
    bodo, baerum = mint(BODO), mint(BAERUM)
    await storage.PutRecord(put_request(patient), metadata=bearer(bodo))

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await storage.GetRecord(
            storage_pb2.GetRecordRequest(tenant=BAERUM, patient_id=patient, kind=KIND, key="k"),
            metadata=bearer(baerum),
        )
    listed = await storage.ListRecords(
        storage_pb2.ListRecordsRequest(tenant=BAERUM, patient_id=patient, kind=KIND), metadata=bearer(baerum)
    )

    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert list(listed.records) == []


async def test_naming_another_tenant_than_the_tokens_is_permission_denied(storage, mint):
    patient = person_number()
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await storage.PutRecord(put_request(patient, tenant=BODO), metadata=bearer(mint(BAERUM)))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert [i.reason for i in details(denied.value, error_details_pb2.ErrorInfo)] == ["TENANT_MISMATCH"]

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await storage.GetRecord(
            storage_pb2.GetRecordRequest(tenant=BODO, patient_id=patient, kind=KIND, key="k"),
            metadata=bearer(mint("974760673")),  # an organisation outside the tenant table
        )
    assert unknown.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_row_level_security_hides_every_row_from_a_query_that_forgets_the_tenant(
    storage, token, database: EmbeddedPostgres
):
    await storage.PutRecord(put_request(person_number()), metadata=bearer(token))
    app = await asyncpg.connect(host=str(database.socket_dir), user="samhandling", database="samhandling")
    admin = await asyncpg.connect(host=str(database.socket_dir), user=ADMIN_ROLE, database="samhandling")
    try:
        tables = ("records", "record_versions", "tenant_feeds")
        for table in tables:
            assert await admin.fetchval(f"SELECT count(*) FROM {table}") > 0, "the superuser sees the data"
            assert await app.fetchval(f"SELECT count(*) FROM {table}") == 0, f"{table} leaks without a tenant"
        async with app.transaction():
            await app.execute("SELECT set_config('samhandling.tenant', '1804', true)")
            assert await app.fetchval("SELECT count(*) FROM record_versions") > 0
            assert await app.fetchval("SELECT count(*) FROM record_versions WHERE tenant <> '1804'") == 0
        async with app.transaction():
            await app.execute("SELECT set_config('samhandling.tenant', '3201', true)")
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await app.execute("INSERT INTO tenant_feeds (tenant, last_sequence) VALUES ('1804', 99)")
    finally:
        await app.close()
        await admin.close()


async def test_versions_are_append_only_in_the_database(storage, token, database: EmbeddedPostgres):
    await storage.PutRecord(put_request(person_number()), metadata=bearer(token))
    app = await asyncpg.connect(host=str(database.socket_dir), user="samhandling", database="samhandling")
    try:
        for statement in ("UPDATE record_versions SET payload = 'x'", "DELETE FROM record_versions"):
            async with app.transaction():
                await app.execute("SELECT set_config('samhandling.tenant', '1804', true)")
                with pytest.raises(asyncpg.exceptions.RestrictViolationError):
                    await app.execute(statement)
    finally:
        await app.close()


async def _collect(stream, count: int, timeout: float = 10.0) -> list[storage_pb2.Record]:
    received: list[storage_pb2.Record] = []

    async def read() -> None:
        async for response in stream:
            received.append(response.record)
            if len(received) == count:
                return

    await asyncio.wait_for(read(), timeout)
    return received


async def test_watch_streams_history_then_live_changes_in_sequence_order(storage, token, mint):
    start = (await storage.PutRecord(put_request(person_number()), metadata=bearer(token))).record.sequence
    written = [
        (await storage.PutRecord(put_request(person_number(), kind=kind), metadata=bearer(token))).record
        for kind in ("test.watch", "test.other", "test.watch")
    ]
    stream = storage.Watch(storage_pb2.WatchRequest(tenant=BODO, from_sequence=start), metadata=bearer(token))
    try:
        history = await _collect(stream, 3)
        live = (await storage.PutRecord(put_request(person_number()), metadata=bearer(token))).record
        # A write in another tenant must not show up in this feed.
        await storage.PutRecord(put_request(person_number(), tenant=BAERUM), metadata=bearer(mint(BAERUM)))
        (arrived,) = await _collect(stream, 1)
    finally:
        stream.cancel()

    assert [r.sequence for r in history] == [r.sequence for r in written]
    assert arrived.sequence == live.sequence and arrived.tenant == BODO


async def test_watch_filters_by_kind(storage, token):
    start = (await storage.PutRecord(put_request(person_number()), metadata=bearer(token))).record.sequence
    await storage.PutRecord(put_request(person_number(), kind="test.skip"), metadata=bearer(token))
    wanted = (await storage.PutRecord(put_request(person_number(), kind="test.keep"), metadata=bearer(token))).record
    stream = storage.Watch(
        storage_pb2.WatchRequest(tenant=BODO, from_sequence=start, kinds=["test.keep"]), metadata=bearer(token)
    )
    try:
        (only,) = await _collect(stream, 1)
    finally:
        stream.cancel()
    assert (only.kind, only.sequence) == ("test.keep", wanted.sequence)


async def test_watch_rejects_another_tenant_and_bad_input(storage, mint):
    for request, code in [
        (storage_pb2.WatchRequest(tenant=BODO), grpc.StatusCode.PERMISSION_DENIED),
        (storage_pb2.WatchRequest(tenant=BAERUM, from_sequence=-1), grpc.StatusCode.INVALID_ARGUMENT),
        (storage_pb2.WatchRequest(tenant=BAERUM, kinds=["BAD"]), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as rejected:
            async for _ in storage.Watch(request, metadata=bearer(mint(BAERUM))):
                pass
        assert rejected.value.code() == code


@pytest.mark.parametrize("expected_version", [0, 1])
async def test_concurrent_retries_of_a_conditional_put_are_replayed_not_conflicts(storage, token, expected_version):
    patient = person_number()
    if expected_version:
        await storage.PutRecord(put_request(patient), metadata=bearer(token))
    request = put_request(patient, expected_version=expected_version)

    results = await asyncio.gather(*(storage.PutRecord(request, metadata=bearer(token)) for _ in range(6)))

    assert {r.record.version for r in results} == {expected_version + 1}
    assert sum(not r.replayed for r in results) == 1


async def test_recorded_times_follow_the_version_order(storage, token):
    patient = person_number()
    await asyncio.gather(*(storage.PutRecord(put_request(patient), metadata=bearer(token)) for _ in range(12)))
    history = await storage.ListRecordVersions(
        storage_pb2.ListRecordVersionsRequest(tenant=BODO, patient_id=patient, kind=KIND, key="k"),
        metadata=bearer(token),
    )
    times = [r.provenance.recorded_at.ToDatetime() for r in history.records]
    assert len(times) == 12 and times == sorted(times)


async def test_numbers_beyond_the_stored_range_are_invalid_argument(storage, token):
    patient = person_number()
    ref = dict(tenant=BODO, patient_id=patient, kind=KIND, key="k")
    huge_token = base64.urlsafe_b64encode(json.dumps({"after": 2**31}).encode()).decode()
    calls = [
        (storage.GetRecord(storage_pb2.GetRecordRequest(**ref, version=2**31), metadata=bearer(token)), "version"),
        (storage.PutRecord(put_request(patient, expected_version=2**31), metadata=bearer(token)), "expected_version"),
        (
            storage.ListRecordVersions(
                storage_pb2.ListRecordVersionsRequest(**ref, page_token=huge_token), metadata=bearer(token)
            ),
            "page_token",
        ),
    ]
    for call, field in calls:
        with pytest.raises(grpc.aio.AioRpcError) as rejected:
            await call
        assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        (bad_request,) = details(rejected.value, error_details_pb2.BadRequest)
        assert [v.field for v in bad_request.field_violations] == [field]


async def test_history_of_large_payloads_comes_in_pages_that_fit_a_message(storage, token, settings):
    patient = person_number()
    big = settings.max_payload_bytes
    for index in range(5):
        await storage.PutRecord(put_request(patient, data=bytes([index]) * big), metadata=bearer(token))

    versions, pages, page_token = [], 0, ""
    while True:
        page = await storage.ListRecordVersions(
            storage_pb2.ListRecordVersionsRequest(
                tenant=BODO, patient_id=patient, kind=KIND, key="k", page_token=page_token
            ),
            metadata=bearer(token),
        )
        versions.extend((r.version, r.payload.data[:1]) for r in page.records)
        pages += 1
        page_token = page.next_page_token
        if not page_token:
            break

    assert versions == [(n + 1, bytes([n])) for n in range(5)]
    assert pages > 1


async def test_a_watch_ends_when_its_token_expires(storage, mint):
    short_lived = mint(BODO, extra_claims={"exp": int(time.time()) + 2})
    stream = storage.Watch(storage_pb2.WatchRequest(tenant=BODO, from_sequence=2**40), metadata=bearer(short_lived))
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await asyncio.wait_for(stream.read(), 40)
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert [i.reason for i in details(ended.value, error_details_pb2.ErrorInfo)] == ["TOKEN_EXPIRED"]


async def test_list_records_descending_pages_from_the_highest_key(storage, mint):
    token, patient = mint(BODO), person_number()
    keys = [f"20261126T0{hour}0000Z" for hour in range(1, 6)]
    for key in keys:
        await storage.PutRecord(
            storage_pb2.PutRecordRequest(
                tenant=BODO,
                patient_id=patient,
                kind="test.descending",
                key=key,
                idempotency_key=str(uuid.uuid4()),
                payload=storage_pb2.Payload(data=b"x", content_type="text/plain"),
            ),
            metadata=bearer(token),
        )
    seen, page_token = [], ""
    while True:
        response = await storage.ListRecords(
            storage_pb2.ListRecordsRequest(
                tenant=BODO,
                patient_id=patient,
                kind="test.descending",
                page_size=2,
                page_token=page_token,
                descending=True,
            ),
            metadata=bearer(token),
        )
        seen += [record.key for record in response.records]
        page_token = response.next_page_token
        if not page_token:
            break
    assert seen == sorted(keys, reverse=True)
