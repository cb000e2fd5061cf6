"""Who is calling: the verified claims of a HelseID-style access token, in domain terms."""

from __future__ import annotations

import re
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
# A system that follows a tenant's change feeds (WatchOverviews, WatchAlerts) for forwarding or alerting.
FEED_SCOPE = "samhandling:feed"
CLAIM_NAME = "name"

PURPOSES_OF_USE = ("TREAT", "ETREAT", "COC", "BTG")
_CODE = re.compile(r"[A-Z_]{1,10}")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


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
    def may_follow_feeds(self) -> bool:
        return FEED_SCOPE in self.scopes and not self.is_citizen

    @property
    def acting_organisation_number(self) -> str:
        return self.unit_organisation_number or self.organisation_number


def _get(mapping: Mapping[str, Any], *path: str) -> Any:
    value: Any = mapping
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _code(value: Any) -> str | None:
    """A purpose-of-use code: kept when it looks like one (it goes into the access log), else marked
    invalid, so no rule can mistake it for a known code and no log column can overflow on it."""
    if isinstance(value, Mapping):
        value = value.get("code")
    if not isinstance(value, str) or not value:
        return None
    return value if _CODE.fullmatch(value) else "INVALID"


def _text(value: Any, limit: int = 200) -> str | None:
    """Printable text that survives UTF-8 (no control characters, no lone surrogates), or None."""
    if not isinstance(value, str) or not value or _UNPRINTABLE.search(value):
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
