import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from services.platform import tokens
from services.platform.dev_tokens import (
    JWKS_FILE,
    SIGNING_KEY_FILE,
    DevTokenRequest,
    dev_claims,
    ensure_dev_keys,
    mint_dev_token,
)
from services.platform.errors import Unauthenticated, Unavailable
from services.platform.principal import (
    CLAIM_CLIENT_ID,
    CLAIM_HPR_NUMBER,
    CLAIM_ORGNR_CHILD,
    CLAIM_ORGNR_PARENT,
    CLAIM_PERSON_ID,
)
from services.platform.tenants import DEFAULT_TENANTS, TenantTable
from services.platform.tokens import MAX_TOKEN_BYTES, JwksSource, TokenVerifier

ISSUER = "https://helseid.unit.test"
AUDIENCE = "samhandling-unit"
BODO_ORG, BAERUM_ORG, UNKNOWN_ORG = "972418013", "935478715", "123456785"
PATIENTS = ("17057549955", "01019012480")
NOT_UTF8 = bytes([0xFF, 0xFE])


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    ensure_dev_keys(tmp_path / "trusted")
    return tmp_path / "trusted"


@pytest.fixture
def other_keys_dir(tmp_path: Path) -> Path:
    ensure_dev_keys(tmp_path / "other")
    return tmp_path / "other"


def make_verifier(location: str, refresh_interval: float = 60.0) -> TokenVerifier:
    return TokenVerifier(
        JwksSource(location, refresh_interval=refresh_interval),
        issuer=ISSUER,
        audience=AUDIENCE,
        tenants=TenantTable.parse(DEFAULT_TENANTS),
    )


@pytest.fixture
def verifier(keys_dir: Path) -> TokenVerifier:
    return make_verifier(str(keys_dir / JWKS_FILE))


def request(**changes: Any) -> DevTokenRequest:
    defaults = {"organisation_number": BODO_ORG, "issuer": ISSUER, "audience": AUDIENCE}
    return DevTokenRequest(**defaults | changes)


def mint(keys_dir: Path, **changes: Any) -> str:
    return mint_dev_token(keys_dir, request(**changes))


def signing_key(keys_dir: Path) -> ECKey:
    return ECKey.import_key(json.loads((keys_dir / SIGNING_KEY_FILE).read_text()))


def sign(key: ECKey, claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode({"alg": "ES256", "kid": key.kid} | header, claims, key, algorithms=["ES256"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def rejection(verifier: TokenVerifier, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    return caught.value


async def test_valid_token_gives_the_principal(verifier: TokenVerifier, keys_dir: Path) -> None:
    token = mint(keys_dir, client_id="ehr-bodo", hpr_number="565501872", purpose_of_use="ETREAT", patient_ids=PATIENTS)

    principal = await verifier.verify(token)

    assert principal.tenant == "1804"
    assert principal.organisation_number == BODO_ORG
    assert principal.acting_organisation_number == BODO_ORG
    assert principal.client_id == "ehr-bodo"
    assert principal.hpr_number == "565501872"
    assert principal.subject == "565501872"
    assert principal.is_citizen is False
    assert principal.person_id is None
    assert principal.token_id
    assert principal.attestation is not None
    assert principal.attestation.purpose_of_use == "ETREAT"
    assert principal.attestation.patient_ids == PATIENTS


async def test_citizen_token(verifier: TokenVerifier, keys_dir: Path) -> None:
    principal = await verifier.verify(mint(keys_dir, citizen_id="17057549955"))

    assert principal.is_citizen is True
    assert principal.person_id == "17057549955"
    assert principal.subject == "17057549955"
    assert principal.hpr_number is None
    assert principal.attestation is None


async def test_organisation_outside_the_tenant_table_has_no_tenant(verifier: TokenVerifier, keys_dir: Path) -> None:
    principal = await verifier.verify(mint(keys_dir, organisation_number=UNKNOWN_ORG))

    assert principal.organisation_number == UNKNOWN_ORG
    assert principal.tenant is None


async def test_audience_list_containing_ours_is_accepted(verifier: TokenVerifier, keys_dir: Path) -> None:
    token = mint(keys_dir, extra_claims={"aud": ["other-api", AUDIENCE]})

    assert (await verifier.verify(token)).tenant == "1804"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": -10}, id="expired-within-leeway"),
        pytest.param({"nbf": 10}, id="not-before-within-leeway"),
    ],
)
async def test_clock_skew_within_leeway_is_accepted(
    verifier: TokenVerifier, keys_dir: Path, claims: dict[str, int]
) -> None:
    now = int(time.time())
    token = mint(keys_dir, extra_claims={name: now + offset for name, offset in claims.items()})

    assert (await verifier.verify(token)).organisation_number == BODO_ORG


async def test_tampered_payload_is_rejected(verifier: TokenVerifier, keys_dir: Path) -> None:
    header, payload, signature = mint(keys_dir).split(".")
    claims = json.loads(unb64(payload))
    claims[CLAIM_ORGNR_PARENT] = BAERUM_ORG
    tampered = f"{header}.{segment(claims)}.{signature}"

    assert (await rejection(verifier, tampered)).reason == "INVALID_TOKEN"


async def test_token_signed_by_another_key_with_our_kid_is_rejected(
    verifier: TokenVerifier, keys_dir: Path, other_keys_dir: Path
) -> None:
    claims = dev_claims(request())
    forged = sign(signing_key(other_keys_dir), claims, kid=signing_key(keys_dir).kid)

    assert (await rejection(verifier, forged)).reason == "INVALID_TOKEN"


async def test_token_from_another_key_set_is_rejected(verifier: TokenVerifier, other_keys_dir: Path) -> None:
    assert (await rejection(verifier, mint(other_keys_dir))).reason == "INVALID_TOKEN"


async def test_kid_not_in_the_jwks_is_rejected(verifier: TokenVerifier, keys_dir: Path) -> None:
    token = sign(signing_key(keys_dir), dev_claims(request()), kid="no-such-key")

    assert (await rejection(verifier, token)).reason == "INVALID_TOKEN"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": -120}, id="expired"),
        pytest.param({"nbf": 120}, id="not-yet-valid"),
        pytest.param({"iat": 120}, id="issued-in-the-future"),
    ],
)
async def test_token_outside_its_lifetime_is_rejected(
    verifier: TokenVerifier, keys_dir: Path, claims: dict[str, int]
) -> None:
    now = int(time.time())
    token = mint(keys_dir, extra_claims={name: now + offset for name, offset in claims.items()})

    assert (await rejection(verifier, token)).reason == "INVALID_TOKEN"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"issuer": "https://evil.example"}, id="wrong-issuer"),
        pytest.param({"issuer": ISSUER + "/"}, id="issuer-with-trailing-slash"),
        pytest.param({"audience": "another-api"}, id="wrong-audience"),
        pytest.param({"extra_claims": {"aud": ["another-api"]}}, id="audience-list-without-ours"),
    ],
)
async def test_wrong_issuer_or_audience_is_rejected(
    verifier: TokenVerifier, keys_dir: Path, changes: dict[str, Any]
) -> None:
    assert (await rejection(verifier, mint(keys_dir, **changes))).reason == "INVALID_TOKEN"


@pytest.mark.parametrize("missing", ["exp", "iss", "aud"])
async def test_token_without_an_essential_claim_is_rejected(
    verifier: TokenVerifier, keys_dir: Path, missing: str
) -> None:
    claims = dev_claims(request())
    del claims[missing]

    assert (await rejection(verifier, sign(signing_key(keys_dir), claims))).reason == "INVALID_TOKEN"


@pytest.mark.parametrize("algorithm", ["none", "None", "NONE"])
async def test_unsigned_token_is_rejected(verifier: TokenVerifier, algorithm: str) -> None:
    token = f"{segment({'alg': algorithm, 'typ': 'JWT'})}.{segment(dev_claims(request()))}."

    assert (await rejection(verifier, token)).reason == "INVALID_TOKEN"


@pytest.mark.parametrize("secret_source", ["pem", "jwks"])
async def test_hs256_with_the_public_key_as_secret_is_rejected(
    verifier: TokenVerifier, keys_dir: Path, secret_source: str
) -> None:
    key = signing_key(keys_dir)
    secret = key.as_pem(private=False) if secret_source == "pem" else (keys_dir / JWKS_FILE).read_bytes()
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = f"{segment(header)}.{segment(dev_claims(request()))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()

    token = f"{signing_input}.{b64(signature)}"

    assert (await rejection(verifier, token)).reason == "INVALID_TOKEN"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        (CLAIM_CLIENT_ID, None),
        (CLAIM_CLIENT_ID, ""),
        (CLAIM_CLIENT_ID, 42),
        (CLAIM_CLIENT_ID, "x" * 201),
        (CLAIM_CLIENT_ID, "with space"),
        (CLAIM_CLIENT_ID, "nul\x00"),
        (CLAIM_ORGNR_PARENT, None),
        (CLAIM_ORGNR_PARENT, ""),
        (CLAIM_ORGNR_PARENT, ["972418013"]),
        (CLAIM_ORGNR_PARENT, "972418014"),
        (CLAIM_ORGNR_CHILD, "97241801300"),
        (CLAIM_HPR_NUMBER, "1" * 25),
        (CLAIM_HPR_NUMBER, 1234567),
        (CLAIM_PERSON_ID, "12345678901"),
        ("jti", "x" * 300),
    ],
)
async def test_token_with_missing_or_malformed_caller_identity_is_rejected(
    verifier: TokenVerifier, keys_dir: Path, claim: str, value: Any
) -> None:
    claims = dev_claims(request())
    if value is None:
        del claims[claim]
    else:
        claims[claim] = value

    error = await rejection(verifier, sign(signing_key(keys_dir), claims))

    assert error.reason == "INVALID_TOKEN"
    assert claim in error.message


@pytest.mark.parametrize("padding", [16 * 1024, MAX_TOKEN_BYTES])
async def test_oversized_token_is_rejected(verifier: TokenVerifier, keys_dir: Path, padding: int) -> None:
    token = mint(keys_dir, extra_claims={"padding": "x" * padding})

    assert len(token) > padding
    assert (await rejection(verifier, token)).reason == "TOKEN_TOO_LARGE"


async def test_token_of_a_few_kib_is_accepted(verifier: TokenVerifier, keys_dir: Path) -> None:
    token = mint(keys_dir, patient_ids=PATIENTS, extra_claims={"padding": "x" * 2048})

    assert 3 * 1024 < len(token) <= MAX_TOKEN_BYTES
    assert (await verifier.verify(token)).tenant == "1804"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        "a.b.c",
        f"{segment({'alg': 'ES256'})}",
        f"{b64(b'[1, 2]')}.{segment({})}.",
        f"{b64(NOT_UTF8)}.{segment({})}.",
    ],
)
async def test_garbage_is_rejected_as_invalid_token(verifier: TokenVerifier, token: str) -> None:
    assert (await rejection(verifier, token)).reason == "INVALID_TOKEN"


async def test_missing_jwks_file_is_unavailable_not_a_bad_token(tmp_path: Path, keys_dir: Path) -> None:
    verifier = make_verifier(str(tmp_path / "missing" / JWKS_FILE))

    with pytest.raises(Unavailable):
        await verifier.verify(mint(keys_dir))


async def test_jwks_file_is_reread_when_it_changes(tmp_path: Path, keys_dir: Path, other_keys_dir: Path) -> None:
    published = tmp_path / "published-jwks.json"
    published.write_bytes((keys_dir / JWKS_FILE).read_bytes())
    verifier = make_verifier(str(published))
    assert (await verifier.verify(mint(keys_dir))).tenant == "1804"

    published.write_bytes((other_keys_dir / JWKS_FILE).read_bytes())
    later = published.stat().st_mtime_ns + 2_000_000_000
    os.utime(published, ns=(later, later))

    assert (await verifier.verify(mint(other_keys_dir))).tenant == "1804"
    assert (await rejection(verifier, mint(keys_dir))).reason == "INVALID_TOKEN"


def jwks_of(*keys_dirs: Path) -> dict[str, Any]:
    return {"keys": [key for path in keys_dirs for key in json.loads((path / JWKS_FILE).read_text())["keys"]]}


async def test_jwks_url_is_refetched_for_an_unknown_kid(
    monkeypatch: pytest.MonkeyPatch, keys_dir: Path, other_keys_dir: Path
) -> None:
    published = {"jwks": jwks_of(keys_dir)}
    fetched: list[str] = []

    def fake_fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return published["jwks"]

    monkeypatch.setattr(tokens, "_fetch_url", fake_fetch)
    verifier = make_verifier("https://helseid.unit.test/jwks", refresh_interval=0.0)
    assert (await verifier.verify(mint(keys_dir))).tenant == "1804"

    published["jwks"] = jwks_of(keys_dir, other_keys_dir)

    assert (await verifier.verify(mint(other_keys_dir))).tenant == "1804"
    assert len(fetched) == 2


async def test_jwks_url_is_not_refetched_within_the_refresh_interval(
    monkeypatch: pytest.MonkeyPatch, keys_dir: Path, other_keys_dir: Path
) -> None:
    fetched: list[str] = []

    def fake_fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return jwks_of(keys_dir)

    monkeypatch.setattr(tokens, "_fetch_url", fake_fetch)
    verifier = make_verifier("https://helseid.unit.test/jwks", refresh_interval=3600.0)

    assert (await verifier.verify(mint(keys_dir))).tenant == "1804"
    assert (await verifier.verify(mint(keys_dir))).tenant == "1804"
    assert (await rejection(verifier, mint(other_keys_dir))).reason == "INVALID_TOKEN"
    assert len(fetched) == 1


async def test_a_verified_token_is_remembered_and_not_verified_again(
    verifier: TokenVerifier, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = mint(keys_dir)
    first = await verifier.verify(token)
    calls = []
    monkeypatch.setattr(tokens.jwt, "decode", lambda *args, **kwargs: calls.append(args))
    assert await verifier.verify(token) is first
    assert calls == []


async def test_a_remembered_token_is_verified_again_after_the_cache_period(
    verifier: TokenVerifier, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = mint(keys_dir)
    await verifier.verify(token)
    decode, calls = tokens.jwt.decode, []

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return decode(*args, **kwargs)

    monkeypatch.setattr(tokens.jwt, "decode", counting_decode)
    later = time.time() + tokens.VERIFIED_CACHE_SECONDS + 1
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    await verifier.verify(token)
    assert len(calls) == 1


async def test_an_expired_token_is_not_served_from_memory(
    verifier: TokenVerifier, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = mint(keys_dir, ttl_seconds=5)
    await verifier.verify(token)
    later = time.time() + 5 + tokens.CLOCK_LEEWAY_SECONDS + 1
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(Unauthenticated):
        await verifier.verify(token)


async def test_the_cache_is_bounded(verifier: TokenVerifier, keys_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    for _ in range(5):
        await verifier.verify(mint(keys_dir))
    assert len(verifier._verified) == 3
