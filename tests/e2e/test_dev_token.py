"""`samhandling dev-token`: compact JWTs the services accept, with the claims asked for."""

from __future__ import annotations

import asyncio

import pytest

from services.platform.settings import DEV_TOKEN_AUDIENCE, DEV_TOKEN_ISSUER
from services.platform.tenants import DEFAULT_TENANTS, TenantTable
from services.platform.tokens import JwksSource, TokenVerifier
from tests.e2e.processes import clean_env, run
from tests.support import person_number


def verify(token: str, data_dir) -> object:
    verifier = TokenVerifier(
        JwksSource(str(data_dir / "dev-keys" / "jwks.json")),
        issuer=DEV_TOKEN_ISSUER,
        audience=DEV_TOKEN_AUDIENCE,
        tenants=TenantTable.parse(DEFAULT_TENANTS),
    )
    return asyncio.run(verifier.verify(token))


def test_clinician_token_carries_tenant_hpr_purpose_and_patients(tmp_path):
    patients = [person_number(), person_number()]
    args = [
        "dev-token",
        "--tenant",
        "3201",
        "--hpr",
        "7654321",
        "--client-id",
        "legevakt-ehr",
        "--purpose",
        "ETREAT",
        "--data-dir",
        str(tmp_path),
    ]
    for patient in patients:
        args += ["--patient", patient]

    minted = run(args, clean_env())

    assert minted.returncode == 0, minted.stderr
    assert minted.stdout.count(".") == 2 and len(minted.stdout.strip().splitlines()) == 1
    caller = verify(minted.stdout.strip(), tmp_path)
    assert (caller.tenant, caller.hpr_number, caller.client_id) == ("3201", "7654321", "legevakt-ehr")
    assert caller.attestation.purpose_of_use == "ETREAT"
    assert list(caller.attestation.patient_ids) == patients
    assert not caller.is_citizen


def test_citizen_token_is_the_patients_own(tmp_path):
    patient = person_number()
    minted = run(["dev-token", "--tenant", "1804", "--citizen", patient, "--data-dir", str(tmp_path)], clean_env())
    caller = verify(minted.stdout.strip(), tmp_path)
    assert caller.is_citizen and caller.person_id == patient and caller.hpr_number is None


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--tenant", "9999"], "not in the tenant table"),
        (["--tenant", "1804", "--patient", "12345678901"], "check digit"),
        (["--tenant", "1804", "--hpr", "abc"], "--hpr"),
        (["--tenant", "1804", "--ttl", "0"], "--ttl"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, args, complaint):
    refused = run(["dev-token", *args, "--data-dir", str(tmp_path)], clean_env())
    assert refused.returncode == 2 and complaint in refused.stderr and refused.stdout == ""


def test_dev_tokens_are_refused_in_production(tmp_path):
    env = clean_env(
        SAMHANDLING_ENVIRONMENT="production",
        SAMHANDLING_DATABASE_URL="postgresql://u@h/db",
        SAMHANDLING_JWKS="https://helseid.example/jwks",
        SAMHANDLING_TOKEN_ISSUER="https://helseid.example",
        SAMHANDLING_TOKEN_AUDIENCE="samhandling",
    )
    refused = run(["dev-token", "--tenant", "1804", "--data-dir", str(tmp_path)], env)
    assert refused.returncode == 2 and "production" in refused.stderr


def test_invalid_configuration_is_reported_clearly_at_start(tmp_path):
    failed = run(["migrate"], clean_env(SAMHANDLING_ENVIRONMENT="staging", SAMHANDLING_MAX_PAYLOAD_BYTES="lots"))
    assert failed.returncode == 2
    assert "SAMHANDLING_ENVIRONMENT" in failed.stderr and "SAMHANDLING_MAX_PAYLOAD_BYTES" in failed.stderr
