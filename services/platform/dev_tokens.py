"""Local development tokens: a key pair kept in the data directory, its public half published as a
JWKS file that the services trust exactly as they would trust HelseID's JWKS."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from services.platform.principal import (
    ATTESTATION_TYPE,
    CITIZEN_SCOPE,
    CLAIM_AUTHORIZATION_DETAILS,
    CLAIM_CLIENT_ID,
    CLAIM_HPR_NUMBER,
    CLAIM_NAME,
    CLAIM_ORGNR_PARENT,
    CLAIM_PERSON_ID,
    FEED_SCOPE,
    PRIVACY_OFFICER_SCOPE,
)

SIGNING_KEY_FILE = "signing-key.json"
JWKS_FILE = "jwks.json"
SIGNING_ALGORITHM = "ES256"
PERSON_ID_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
ORGANISATION_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
PURPOSE_OF_USE_SYSTEM = "urn:oid:2.16.840.1.113883.1.11.20448"


def ensure_dev_keys(keys_dir: Path) -> Path:
    """Creates the dev key pair once; returns the path of the public JWKS file."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    private_path, jwks_path = keys_dir / SIGNING_KEY_FILE, keys_dir / JWKS_FILE
    if not private_path.exists():
        key = ECKey.generate_key("P-256", parameters={"alg": SIGNING_ALGORITHM, "use": "sig"})
        key.ensure_kid()
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(key.as_dict(private=True), handle)
    if not jwks_path.exists():
        public = ECKey.import_key(json.loads(private_path.read_text())).as_dict(private=False)
        jwks_path.write_text(json.dumps({"keys": [public]}, indent=2))
    return jwks_path


@dataclass(frozen=True)
class DevTokenRequest:
    organisation_number: str
    issuer: str
    audience: str
    client_id: str = "dev-ehr"
    hpr_number: str | None = None
    purpose_of_use: str = "TREAT"
    patient_ids: tuple[str, ...] = ()
    citizen_id: str | None = None
    name: str | None = None
    privacy_officer: bool = False
    feed: bool = False
    ttl_seconds: int = 3600
    extra_claims: dict[str, Any] = field(default_factory=dict)


def mint_dev_token(keys_dir: Path, request: DevTokenRequest) -> str:
    ensure_dev_keys(keys_dir)
    key = ECKey.import_key(json.loads((keys_dir / SIGNING_KEY_FILE).read_text()))
    header = {"alg": SIGNING_ALGORITHM, "kid": key.kid, "typ": "at+jwt"}
    return jwt.encode(header, dev_claims(request), KeySet([key]), algorithms=[SIGNING_ALGORITHM])


def dev_claims(request: DevTokenRequest) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": request.issuer,
        "aud": request.audience,
        "iat": now,
        "nbf": now,
        "exp": now + request.ttl_seconds,
        "jti": str(uuid.uuid4()),
        CLAIM_CLIENT_ID: request.client_id,
        CLAIM_ORGNR_PARENT: request.organisation_number,
    }
    if request.citizen_id:
        claims |= {"sub": request.citizen_id, CLAIM_PERSON_ID: request.citizen_id, "scope": CITIZEN_SCOPE}
    else:
        scopes = ["samhandling"]
        scopes += [PRIVACY_OFFICER_SCOPE] if request.privacy_officer else []
        scopes += [FEED_SCOPE] if request.feed else []
        scope = " ".join(scopes)
        claims |= {"sub": request.hpr_number or request.client_id, "scope": scope}
        if request.hpr_number:
            claims[CLAIM_HPR_NUMBER] = request.hpr_number
        claims[CLAIM_AUTHORIZATION_DETAILS] = [_attestation(request)]
    if request.name:
        claims[CLAIM_NAME] = request.name
    return claims | request.extra_claims


def _attestation(request: DevTokenRequest) -> dict[str, Any]:
    organisation = {"id": request.organisation_number, "system": ORGANISATION_SYSTEM}
    return {
        "type": ATTESTATION_TYPE,
        "practitioner": {"legal_entity": organisation, "point_of_care": organisation},
        "care_relationship": {
            "purpose_of_use": {"code": request.purpose_of_use, "system": PURPOSE_OF_USE_SYSTEM},
        },
        "patients": [
            {"identifier": {"id": patient, "system": PERSON_ID_SYSTEM}, "point_of_care": organisation}
            for patient in request.patient_ids
        ],
    }
