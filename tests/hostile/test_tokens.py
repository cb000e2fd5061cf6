"""The token attack matrix: every malformed, forged or misdirected token against one patient-data RPC
of every service, each with the exact status and ErrorInfo reason it must get.

Authentication failures (UNAUTHENTICATED) are decided by each service before any request field is
read: nothing is stored and nothing is logged as an access. Valid tokens that may not see the data
are PERMISSION_DENIED by the access decision, with the access reason — the same reason through
overview and news2 as from access itself — and the denial is in the patient's access log. Storage,
which only the other services call, checks the token and the tenant but not the attestation: access
decides that before storage is reached."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from samhandling.access.v1 import access_pb2
from samhandling.news2.v1 import news2_pb2
from samhandling.overview.v1 import overview_pb2
from samhandling.storage.v1 import storage_pb2

from services.platform.dev_tokens import JWKS_FILE, SIGNING_KEY_FILE, DevTokenRequest, dev_claims
from services.platform.errors import Unauthenticated
from services.platform.principal import CLAIM_AUTHORIZATION_DETAILS, CLAIM_CLIENT_ID, CLAIM_ORGNR_PARENT
from services.platform.tokens import JwksSource, TokenVerifier
from tests.hostile.support import RPCS, Outcome, Rpc, assert_serving, invoke
from tests.support import BAERUM_ORG, BODO, BODO_ORG, person_number

UNAUTHENTICATED, PERMISSION_DENIED, OK = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.OK,
)
NURSE_HPR = "565505933"
# A valid organisation number (check digit holds) that belongs to no municipality in the tenant table.
OUTSIDE_ORG = "974760673"
TEST_KIND = "test.tokens"


def _rpc(name: str) -> Rpc:
    return next(rpc for rpc in RPCS if str(rpc) == name)


# One patient-data RPC per service, and a request naming the patient (and, when given, the tenant).
TARGETS: dict[str, tuple[Rpc, Callable[[str, str], object]]] = {
    "access": (
        _rpc("access.Authorize"),
        lambda patient, tenant: access_pb2.AuthorizeRequest(
            tenant=tenant,
            patient_id=patient,
            data_kind=access_pb2.DATA_KIND_SERVICES_OVERVIEW,
            action=access_pb2.ACTION_READ,
        ),
    ),
    "overview": (
        _rpc("overview.GetOverview"),
        lambda patient, tenant: overview_pb2.GetOverviewRequest(tenant=tenant, patient_id=patient),
    ),
    "news2": (
        _rpc("news2.ListAssessments"),
        lambda patient, tenant: news2_pb2.ListAssessmentsRequest(tenant=tenant, patient_id=patient),
    ),
    "storage": (
        _rpc("storage.ListRecords"),
        lambda patient, tenant: storage_pb2.ListRecordsRequest(
            tenant=tenant or BODO, patient_id=patient, kind=TEST_KIND
        ),
    ),
}


# ---------------------------------------------------------------------------------------------
# Building tokens by hand.


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value: object) -> str:
    return b64(json.dumps(value).encode())


@dataclass
class Forge:
    """Mints and forges tokens for one patient: the trusted dev key, its JWKS, and the expected claims."""

    keys_dir: Path
    issuer: str
    audience: str
    patient: str

    @property
    def trusted_key(self) -> ECKey:
        return ECKey.import_key(json.loads((self.keys_dir / SIGNING_KEY_FILE).read_text()))

    @property
    def public_jwk(self) -> dict:
        return json.loads((self.keys_dir / JWKS_FILE).read_text())["keys"][0]

    def claims(self, organisation: str = BODO_ORG, patients: tuple[str, ...] | None = None, **fields) -> dict:
        request = DevTokenRequest(
            organisation_number=organisation,
            issuer=self.issuer,
            audience=self.audience,
            client_id="token-attack-ehr",
            hpr_number=NURSE_HPR,
            patient_ids=(self.patient,) if patients is None else patients,
            **fields,
        )
        return dev_claims(request)

    def sign(self, claims: dict, *, key=None, header: dict | None = None, algorithm: str = "ES256") -> str:
        key = key or self.trusted_key
        header = {"alg": algorithm, "typ": "at+jwt", "kid": key.kid, **(header or {})}
        return jwt.encode(header, claims, key, algorithms=[algorithm])

    def other_key(self) -> ECKey:
        key = ECKey.generate_key("P-256", parameters={"alg": "ES256", "use": "sig"})
        key.ensure_kid()
        return key

    def valid(self, **changes) -> str:
        return self.sign(self.claims() | changes)

    # -- the attacks ------------------------------------------------------------------------

    def tampered_payload(self) -> str:
        header, _, signature = self.valid().split(".")
        # Same signature, claims edited: another patient and the privacy officer's scope added.
        claims = self.claims(patients=(self.patient, person_number())) | {"scope": "samhandling:privacy-officer"}
        return f"{header}.{segment(claims)}.{signature}"

    def tampered_signature(self) -> str:
        header, payload, signature = self.valid().split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        raw[5] ^= 0x01
        return f"{header}.{payload}.{b64(bytes(raw))}"

    def kid_of_trusted_key_signed_by_another(self) -> str:
        return self.sign(self.claims(), key=self.other_key(), header={"kid": self.trusted_key.kid})

    def trusted_key_with_kid_of_another(self) -> str:
        return self.sign(self.claims(), header={"kid": self.other_key().kid})

    def another_key_with_its_jwk_embedded(self) -> str:
        other = self.other_key()
        return self.sign(self.claims(), key=other, header={"jwk": other.as_dict(private=False)})

    def alg_none(self, spelling: str = "none", signature: str = "") -> str:
        return f"{segment({'alg': spelling, 'typ': 'JWT'})}.{segment(self.claims())}.{signature}"

    def hs256(self, secret: bytes) -> str:
        return hs256_token(self.claims(), self.trusted_key.kid, secret)

    def hs256_with_public_jwk(self) -> str:
        return self.hs256(json.dumps(self.public_jwk).encode())

    def hs256_with_public_pem(self) -> str:
        public = self.trusted_key.get_op_key("verify")
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return self.hs256(pem)

    def rs256_by_an_unknown_key(self) -> str:
        key = RSAKey.generate_key(2048, parameters={"alg": "RS256"})
        key.ensure_kid()
        return jwt.encode({"alg": "RS256", "kid": key.kid}, self.claims(), KeySet([key]), algorithms=["RS256"])

    def es512(self) -> str:
        key = ECKey.generate_key("P-521", parameters={"alg": "ES512"})
        return self.sign(self.claims(), key=key, algorithm="ES512", header={"kid": self.trusted_key.kid})


def now() -> int:
    return int(time.time())


INVALID_UTF8_HEADER = b64(b"\xff\xfe")


def bearer(token: str) -> str:
    return f"Bearer {token}"


UNAUTHENTICATED_CASES: dict[str, tuple[Callable[[Forge], str | None], str]] = {
    "tampered payload": (lambda f: bearer(f.tampered_payload()), "INVALID_TOKEN"),
    "tampered signature": (lambda f: bearer(f.tampered_signature()), "INVALID_TOKEN"),
    "kid of the trusted key, signed by another key": (
        lambda f: bearer(f.kid_of_trusted_key_signed_by_another()),
        "INVALID_TOKEN",
    ),
    "signed by the trusted key, kid of another key": (
        lambda f: bearer(f.trusted_key_with_kid_of_another()),
        "INVALID_TOKEN",
    ),
    "another key, its own JWK embedded in the header": (
        lambda f: bearer(f.another_key_with_its_jwk_embedded()),
        "INVALID_TOKEN",
    ),
    "alg none": (lambda f: bearer(f.alg_none()), "INVALID_TOKEN"),
    "alg None": (lambda f: bearer(f.alg_none("None")), "INVALID_TOKEN"),
    "alg none with the original signature": (
        lambda f: bearer(f.alg_none(signature=f.valid().split(".")[2])),
        "INVALID_TOKEN",
    ),
    "HS256 with the public JWK as HMAC secret": (lambda f: bearer(f.hs256_with_public_jwk()), "INVALID_TOKEN"),
    "HS256 with the public key PEM as HMAC secret": (lambda f: bearer(f.hs256_with_public_pem()), "INVALID_TOKEN"),
    "RS256 by an unknown key": (lambda f: bearer(f.rs256_by_an_unknown_key()), "INVALID_TOKEN"),
    "ES512 (not allowed)": (lambda f: bearer(f.es512()), "INVALID_TOKEN"),
    "expired": (lambda f: bearer(f.valid(exp=now() - 120)), "INVALID_TOKEN"),
    "no expiry": (lambda f: bearer(f.sign({k: v for k, v in f.claims().items() if k != "exp"})), "INVALID_TOKEN"),
    "expiry not a number": (lambda f: bearer(f.valid(exp="tomorrow")), "INVALID_TOKEN"),
    "not yet valid": (lambda f: bearer(f.valid(nbf=now() + 600)), "INVALID_TOKEN"),
    "wrong issuer": (lambda f: bearer(f.valid(iss="https://evil.example")), "INVALID_TOKEN"),
    "wrong audience": (lambda f: bearer(f.valid(aud="someone-else")), "INVALID_TOKEN"),
    "audience list without ours": (lambda f: bearer(f.valid(aud=["a", "b"])), "INVALID_TOKEN"),
    "organisation number with a bad check digit": (
        lambda f: bearer(f.valid(**{CLAIM_ORGNR_PARENT: "972418014"})),
        "INVALID_TOKEN",
    ),
    "organisation number not a string": (
        lambda f: bearer(f.valid(**{CLAIM_ORGNR_PARENT: 972418013})),
        "INVALID_TOKEN",
    ),
    "client id with a space": (lambda f: bearer(f.valid(**{CLAIM_CLIENT_ID: "a b"})), "INVALID_TOKEN"),
    "no client id": (
        lambda f: bearer(f.sign({k: v for k, v in f.claims().items() if k != CLAIM_CLIENT_ID})),
        "INVALID_TOKEN",
    ),
    "oversized (9 KiB)": (lambda f: bearer(f.valid(padding="x" * 9_000)), "TOKEN_TOO_LARGE"),
    # Base64 makes it about 27 KiB: still under the transport's 32 KiB metadata limit, so our own check answers.
    "oversized (27 KiB)": (lambda f: bearer(f.valid(padding="x" * 20_000)), "TOKEN_TOO_LARGE"),
    "garbage": (lambda f: bearer("not.a.jwt"), "INVALID_TOKEN"),
    "one segment": (lambda f: bearer("eyJhbGciOiJFUzI1NiJ9"), "INVALID_TOKEN"),
    "header not JSON": (lambda f: bearer(f"{b64(b'{alg')}.{segment({})}.c2ln"), "INVALID_TOKEN"),
    "header a JSON list": (lambda f: bearer(f"{segment(['ES256'])}.{segment({})}.c2ln"), "INVALID_TOKEN"),
    "header with invalid UTF-8": (lambda f: bearer(f"{INVALID_UTF8_HEADER}.{segment({})}.c2ln"), "INVALID_TOKEN"),
    "random bytes": (lambda f: bearer(b64(uuid.uuid4().bytes * 4)), "INVALID_TOKEN"),
    "empty bearer": (lambda f: "Bearer ", "MISSING_TOKEN"),
    "bearer of spaces": (lambda f: "Bearer      ", "MISSING_TOKEN"),
    "another scheme": (lambda f: "Basic dXNlcjpwYXNz", "MISSING_TOKEN"),
    "no authorization header": (lambda f: None, "MISSING_TOKEN"),
}


# Valid tokens that may not have the data. Storage does not decide access (access did, before the
# request reached storage); it checks only that the tenant is the caller's.
DENIED_CASES: dict[str, tuple[Callable[[Forge], str], str, dict[str, tuple[grpc.StatusCode, str | None]]]] = {
    "missing attestation": (
        lambda f: bearer(f.sign({k: v for k, v in f.claims().items() if k != CLAIM_AUTHORIZATION_DETAILS})),
        "",
        {
            **dict.fromkeys(("access", "overview", "news2"), (PERMISSION_DENIED, "PATIENT_NOT_IN_ATTESTATION")),
            "storage": (OK, None),
        },
    ),
    "attestation malformed (a string)": (
        lambda f: bearer(f.valid(**{CLAIM_AUTHORIZATION_DETAILS: "nhn:tillitsrammeverk:parameters"})),
        "",
        {
            **dict.fromkeys(("access", "overview", "news2"), (PERMISSION_DENIED, "PATIENT_NOT_IN_ATTESTATION")),
            "storage": (OK, None),
        },
    ),
    "attestation for another patient": (
        lambda f: bearer(f.sign(f.claims(patients=(person_number(),)))),
        "",
        {
            **dict.fromkeys(("access", "overview", "news2"), (PERMISSION_DENIED, "PATIENT_NOT_IN_ATTESTATION")),
            "storage": (OK, None),
        },
    ),
    "organisation of another tenant, naming this tenant": (
        lambda f: bearer(f.sign(f.claims(organisation=BAERUM_ORG))),
        BODO,
        dict.fromkeys(TARGETS, (PERMISSION_DENIED, "TENANT_MISMATCH")),
    ),
    "organisation outside every tenant, naming this tenant": (
        lambda f: bearer(f.sign(f.claims(organisation=OUTSIDE_ORG))),
        BODO,
        {
            **dict.fromkeys(("access", "overview", "news2"), (PERMISSION_DENIED, "TENANT_MISMATCH")),
            "storage": (PERMISSION_DENIED, "UNKNOWN_ORGANISATION"),
        },
    ),
    "organisation outside every tenant, naming no tenant": (
        lambda f: bearer(f.sign(f.claims(organisation=OUTSIDE_ORG))),
        "",
        dict.fromkeys(TARGETS, (PERMISSION_DENIED, "UNKNOWN_ORGANISATION")),
    ),
    "a citizen's own token for another patient": (
        lambda f: bearer(f.sign(f.claims(citizen_id=person_number(), patients=()))),
        "",
        {
            **dict.fromkeys(("access", "overview", "news2"), (PERMISSION_DENIED, "PATIENT_NOT_IN_ATTESTATION")),
            "storage": (OK, None),
        },
    ),
}


def by_access(reason: str, storage: tuple[grpc.StatusCode, str | None] = (OK, None)) -> dict:
    return {**dict.fromkeys(("access", "overview", "news2"), (PERMISSION_DENIED, reason)), "storage": storage}


@pytest.fixture
def forge(settings) -> Forge:
    return Forge(settings.dev_keys_dir, settings.token_issuer, settings.token_audience, person_number())


async def call(channels, service: str, authorization: str | None, patient: str, tenant: str = "") -> Outcome:
    rpc, build = TARGETS[service]
    metadata = () if authorization is None else (("authorization", authorization),)
    return await invoke(channels[service], rpc, build(patient, tenant), metadata)


async def patient_log(ledger, patient: str) -> list:
    return await ledger.fetch(
        "SELECT tenant, allowed, reason FROM access_log WHERE patient_id = $1 ORDER BY sequence", patient
    )


@pytest.mark.parametrize("service", TARGETS)
async def test_the_untampered_token_is_accepted(service, forge, channels, ledger):
    outcome = await call(channels, service, bearer(forge.valid()), forge.patient)
    assert outcome.code == OK, outcome.describe()
    expected_log = [(BODO, True, None)] if service != "storage" else []
    assert [tuple(row) for row in await patient_log(ledger, forge.patient)] == expected_log


@pytest.mark.parametrize("case", UNAUTHENTICATED_CASES)
@pytest.mark.parametrize("service", TARGETS)
async def test_forged_and_malformed_tokens_are_unauthenticated_and_leave_no_trace(
    service, case, forge, channels, ledger
):
    build, reason = UNAUTHENTICATED_CASES[case]
    before = await ledger.footprint()

    outcome = await call(channels, service, build(forge), forge.patient)

    assert (outcome.code, outcome.reason) == (UNAUTHENTICATED, reason), outcome.describe()
    assert await ledger.footprint() == before, "an unauthenticated call stored or logged something"
    assert await patient_log(ledger, forge.patient) == []


@pytest.mark.parametrize("case", DENIED_CASES)
@pytest.mark.parametrize("service", TARGETS)
async def test_valid_tokens_without_a_right_to_the_data_get_the_access_reason(service, case, forge, channels, ledger):
    build, tenant, expected = DENIED_CASES[case]
    code, reason = expected[service]
    before = await ledger.footprint()

    outcome = await call(channels, service, build(forge), forge.patient, tenant)

    assert (outcome.code, outcome.reason) == (code, reason), outcome.describe()
    if code == OK:
        assert not outcome.responses[0].records, "storage has nothing for this patient"
    assert (await ledger.footprint()).data == before.data, "a denied call stored something"
    log = [tuple(row) for row in await patient_log(ledger, forge.patient)]
    if service != "storage" and reason != "UNKNOWN_ORGANISATION":
        # Decided by access and logged in the tenant the request named (or the caller's own), allowed or not.
        assert log == [(tenant or BODO, False, reason)]
    else:
        # Storage does not decide access; a caller with no tenant has no log to be written to.
        assert log == []


@pytest.mark.parametrize("service", TARGETS)
@pytest.mark.parametrize("padding", [30_000, 100_000])
async def test_a_token_past_the_transport_metadata_limit_is_refused_before_any_service_code(
    service, padding, forge, channels, ledger
):
    """Between the soft (32 KiB) and hard (64 KiB) metadata limits gRPC refuses at random, beyond the hard
    limit always, with RESOURCE_EXHAUSTED; below them our own 8 KiB check answers TOKEN_TOO_LARGE."""
    before = await ledger.footprint()
    outcome = await call(channels, service, bearer(forge.valid(padding="x" * padding)), forge.patient)
    allowed = {(UNAUTHENTICATED, "TOKEN_TOO_LARGE"), (grpc.StatusCode.RESOURCE_EXHAUSTED, None)}
    if padding > 64 * 1024:
        allowed = {(grpc.StatusCode.RESOURCE_EXHAUSTED, None)}
    assert (outcome.code, outcome.reason) in allowed, outcome.describe()
    assert await ledger.footprint() == before
    await assert_serving(channels)


def hs256_token(claims: dict, kid: str, secret: bytes) -> str:
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{segment(claims)}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


async def test_an_rsa_jwks_like_helseids_refuses_hs256_signed_with_its_own_public_key(tmp_path, settings):
    """The classic key-confusion attack is aimed at RSA keys (HelseID signs with RS256); the mesh above
    runs on the EC dev key, so the verifier is built here on an RSA JWKS, as production builds it."""
    key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"})
    key.ensure_kid()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    verifier = TokenVerifier(
        JwksSource(str(jwks)), issuer=settings.token_issuer, audience=settings.token_audience, tenants=settings.tenants
    )
    claims = dev_claims(
        DevTokenRequest(organisation_number=BODO_ORG, issuer=settings.token_issuer, audience=settings.token_audience)
    )
    genuine = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])
    assert (await verifier.verify(genuine)).organisation_number == BODO_ORG

    public = key.get_op_key("verify")
    secrets = {
        "PEM": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "PKCS#1 PEM": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "DER": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "JWK": json.dumps(key.as_dict(private=False)).encode(),
        "modulus": base64.urlsafe_b64decode(key.as_dict()["n"] + "=="),
    }
    for form, secret in secrets.items():
        with pytest.raises(Unauthenticated) as refused:
            await verifier.verify(hs256_token(claims, key.kid, secret))
        assert refused.value.reason == "INVALID_TOKEN", form
    for spelling in ("none", "None", "NONE"):
        with pytest.raises(Unauthenticated):
            await verifier.verify(f"{segment({'alg': spelling, 'kid': key.kid})}.{segment(claims)}.")
