"""Every RPC but health and reflection requires a valid bearer token, checked by each service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from samhandling.storage.v1 import storage_pb2

from services.platform.dev_tokens import DevTokenRequest, dev_claims, ensure_dev_keys, mint_dev_token
from tests.support import BODO, bearer, person_number


def _segment(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _claims(settings, **extra) -> dict:
    request = DevTokenRequest(
        organisation_number="972418013", issuer=settings.token_issuer, audience=settings.token_audience
    )
    return dev_claims(request) | extra


def unsigned_token(settings) -> str:
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(_claims(settings))}."


def hs256_with_public_key(settings) -> str:
    jwks = json.loads((ensure_dev_keys(settings.dev_keys_dir)).read_text())
    secret = json.dumps(jwks["keys"][0]).encode()
    signing_input = f"{_segment({'alg': 'HS256', 'kid': jwks['keys'][0]['kid']})}.{_segment(_claims(settings))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def foreign_key_token(settings, tmp_path: Path) -> str:
    request = DevTokenRequest(
        organisation_number="972418013", issuer=settings.token_issuer, audience=settings.token_audience
    )
    return mint_dev_token(tmp_path / "other-keys", request)


def tampered_token(mint) -> str:
    header, payload, signature = mint(BODO).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["helseid://claims/client/claims/orgnr_parent"] = "935478715"
    return f"{header}.{_segment(claims)}.{signature}"


REJECTED_TOKENS = {
    "signed by another key": lambda s, mint, tmp: foreign_key_token(s, tmp),
    "tampered payload": lambda s, mint, tmp: tampered_token(mint),
    "expired": lambda s, mint, tmp: mint(BODO, extra_claims={"exp": int(time.time()) - 120}),
    "not yet valid": lambda s, mint, tmp: mint(BODO, extra_claims={"nbf": int(time.time()) + 600}),
    "wrong audience": lambda s, mint, tmp: mint(BODO, extra_claims={"aud": "someone-else"}),
    "wrong issuer": lambda s, mint, tmp: mint(BODO, extra_claims={"iss": "https://evil.example"}),
    "alg none": lambda s, mint, tmp: unsigned_token(s),
    "HS256 with the public key": lambda s, mint, tmp: hs256_with_public_key(s),
    "garbage": lambda s, mint, tmp: "not.a.jwt",
    "oversized": lambda s, mint, tmp: mint(BODO, extra_claims={"padding": "x" * 9_000}),
}


def get_request() -> storage_pb2.GetRecordRequest:
    return storage_pb2.GetRecordRequest(tenant=BODO, patient_id=person_number(), kind="test.auth", key="k")


async def test_no_token_is_unauthenticated(storage):
    with pytest.raises(grpc.aio.AioRpcError) as rejected:
        await storage.GetRecord(get_request())
    assert rejected.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_non_bearer_authorization_header_is_unauthenticated(storage):
    with pytest.raises(grpc.aio.AioRpcError) as rejected:
        await storage.GetRecord(get_request(), metadata=(("authorization", "Basic dXNlcjpwdw=="),))
    assert rejected.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("case", sorted(REJECTED_TOKENS))
async def test_invalid_tokens_are_unauthenticated_and_write_nothing(storage, settings, mint, tmp_path, case):
    token = REJECTED_TOKENS[case](settings, mint, tmp_path)
    patient = person_number()
    put = storage_pb2.PutRecordRequest(
        tenant=BODO,
        patient_id=patient,
        kind="test.auth",
        key="k",
        idempotency_key=str(uuid.uuid4()),
        payload=storage_pb2.Payload(data=b"x", content_type="text/plain"),
    )

    with pytest.raises(grpc.aio.AioRpcError) as rejected:
        await storage.PutRecord(put, metadata=bearer(token))

    assert rejected.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await storage.GetRecord(
            storage_pb2.GetRecordRequest(tenant=BODO, patient_id=patient, kind="test.auth", key="k"),
            metadata=bearer(mint(BODO)),
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_valid_dev_token_is_accepted(storage, mint):
    with pytest.raises(grpc.aio.AioRpcError) as answered:
        await storage.GetRecord(get_request(), metadata=bearer(mint(BODO)))
    assert answered.value.code() == grpc.StatusCode.NOT_FOUND  # authenticated, and nothing is there


async def test_health_and_reflection_need_no_token(storage_channel):
    health = await health_pb2_grpc.HealthStub(storage_channel).Check(
        health_pb2.HealthCheckRequest(service="samhandling.storage.v1.StorageService")
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(storage_channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    async for response in responses:
        names = {service.name for service in response.list_services_response.service}
        break
    assert {"samhandling.storage.v1.StorageService", "grpc.health.v1.Health"} <= names
