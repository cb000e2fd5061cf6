"""Who is calling: the verified claims of a HelseID-style access token, in domain terms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# HelseID claim names (see ../shared/design/domain.md §3).
CLAIM_CLIENT_ID = "client_id"
CLAIM_ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
CLAIM_ORGNR_CHILD = "helseid://claims/client/claims/orgnr_child"
CLAIM_HPR_NUMBER = "helseid://claims/hpr/hpr_number"
CLAIM_PERSON_ID = "helseid://claims/identity/pid"
CLAIM_AUTHORIZATION_DETAILS = "authorization_details"
ATTESTATION_TYPE = "nhn:tillitsrammeverk:parameters"
# A citizen (patient) acting for themself through a citizen portal carries this scope.
CITIZEN_SCOPE = "samhandling:citizen"
# The municipality's privacy officer: reads any patient's access log and the follow-up stream.
PRIVACY_OFFICER_SCOPE = "samhandling:privacy-officer"
CLAIM_NAME = "name"

PURPOSES_OF_USE = ("TREAT", "ETREAT", "COC", "BTG")


@dataclass(frozen=True)
class Attestation:
    """The trust-framework attestation (tillitsrammeverk): why, where and for which patients."""

    purpose_of_use: str | None
    patient_ids: tuple[str, ...]
    # care_relationship.decision_ref.id: the caller's reference for the decision to access.
    decision_ref: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_authorization_details(cls, details: Any) -> Attestation | None:
        entries = details if isinstance(details, list) else [details]
        for entry in entries:
            if isinstance(entry, Mapping) and entry.get("type") == ATTESTATION_TYPE:
                return cls(
                    purpose_of_use=_code(_get(entry, "care_relationship", "purpose_of_use")),
                    patient_ids=tuple(_patient_ids(entry.get("patients"))),
                    decision_ref=_text(_get(entry, "care_relationship", "decision_ref", "id")),
                    raw=entry,
                )
        return None


@dataclass(frozen=True)
class Principal:
    subject: str
    client_id: str
    organisation_number: str
    unit_organisation_number: str | None
    # The municipality the organisation acts for, or None when it is not in the tenant table.
    tenant: str | None
    hpr_number: str | None
    person_id: str | None
    is_citizen: bool
    attestation: Attestation | None
    token_id: str | None
    # When the token expires (seconds since the epoch); long-lived streams end then.
    expires_at: float | None = None
    # The person's name, when the token carries it (for the access log).
    name: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def is_privacy_officer(self) -> bool:
        return PRIVACY_OFFICER_SCOPE in self.scopes

    @property
    def acting_organisation_number(self) -> str:
        return self.unit_organisation_number or self.organisation_number


def _get(mapping: Mapping[str, Any], *path: str) -> Any:
    value: Any = mapping
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _code(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("code")
    return value if isinstance(value, str) and value else None


def _text(value: Any, limit: int = 200) -> str | None:
    if not isinstance(value, str) or not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    return value[:limit]


def _patient_ids(patients: Any) -> list[str]:
    found = []
    for patient in patients if isinstance(patients, list) else []:
        identifier = patient.get("identifier") if isinstance(patient, Mapping) else None
        if isinstance(identifier, Mapping):
            identifier = identifier.get("id") or identifier.get("value")
        if isinstance(identifier, str) and identifier:
            found.append(identifier)
    return found
