"""The change feed survives a restart of the storage process: a watcher that reconnects with its
last sequence misses nothing and sees nothing twice."""

from __future__ import annotations

import signal
import uuid

import grpc
import pytest
from samhandling.storage.v1 import storage_pb2, storage_pb2_grpc

from tests.e2e.processes import clean_env, free_port, start, wait_serving
from tests.support import BODO, bearer, person_number

pytestmark = pytest.mark.e2e
KIND = f"test.resume_{uuid.uuid4().hex[:8]}"


def write(stub, token: str) -> storage_pb2.Record:
    return stub.PutRecord(
        storage_pb2.PutRecordRequest(
            tenant=BODO,
            patient_id=person_number(),
            kind=KIND,
            key="k",
            idempotency_key=str(uuid.uuid4()),
            payload=storage_pb2.Payload(data=b"{}", content_type="application/json"),
        ),
        metadata=bearer(token),
        timeout=10,
    ).record


def read_feed(stub, token: str, after: int, expected: int) -> list[int]:
    """Sequences delivered after `after`, reading until `expected` arrive, then 1 s more for extras."""
    received: list[int] = []
    stream = stub.Watch(
        storage_pb2.WatchRequest(tenant=BODO, from_sequence=after, kinds=[KIND]),
        metadata=bearer(token),
        timeout=max(2.0, expected * 2.0),
    )
    try:
        for response in stream:
            received.append(response.record.sequence)
    except grpc.RpcError as ended:
        assert ended.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    return received


def test_watch_resumes_after_storage_restarts(database, data_dir, mint, tmp_path):
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = clean_env(SAMHANDLING_DATABASE_URL=database.url, SAMHANDLING_DATA_DIR=str(data_dir))
    token = mint(BODO)

    storage = start(["serve", "storage", "--port", str(port)], env, tmp_path / "storage-1.log")
    wait_serving(target, 30)
    with grpc.insecure_channel(target) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        before = [write(stub, token) for _ in range(3)]
        first_read = read_feed(stub, token, 0, 3)
    storage.send_signal(signal.SIGKILL)
    storage.wait(timeout=10)

    storage = start(["serve", "storage", "--port", str(port)], env, tmp_path / "storage-2.log")
    try:
        wait_serving(target, 30)
        with grpc.insecure_channel(target) as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            after = [write(stub, token) for _ in range(2)]
            resumed = read_feed(stub, token, first_read[-1], 2)
    finally:
        storage.send_signal(signal.SIGTERM)
        exit_code = storage.wait(timeout=30)

    assert first_read == [r.sequence for r in before]
    assert resumed == [r.sequence for r in after]
    assert after[0].sequence > before[-1].sequence
    assert exit_code == 0
