"""The tenant table: which organisations act for which municipality (tenant)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.platform.identifiers import municipality_number_problem, organisation_number_problem

# Bodø and Bærum, the two pilot municipalities.
DEFAULT_TENANTS = "1804=972418013,3201=935478715"


@dataclass(frozen=True)
class TenantTable:
    """Maps an organisation number (the token's orgnr_parent) to its municipality number."""

    municipality_by_organisation: Mapping[str, str]

    @classmethod
    def parse(cls, text: str) -> TenantTable:
        """Parses `municipality=orgnr` pairs separated by commas; a municipality may list several."""
        mapping: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in text.split(","))):
            municipality, separator, organisation = (piece.strip() for piece in entry.partition("="))
            if not separator:
                raise ValueError(f"tenant entry {entry!r} must look like 1804=972418013")
            if problem := municipality_number_problem(municipality):
                raise ValueError(f"tenant entry {entry!r}: municipality {problem}")
            if problem := organisation_number_problem(organisation):
                raise ValueError(f"tenant entry {entry!r}: organisation number {problem}")
            if mapping.get(organisation, municipality) != municipality:
                raise ValueError(f"organisation {organisation} is listed for two municipalities")
            mapping[organisation] = municipality
        if not mapping:
            raise ValueError("the tenant table is empty")
        return cls(mapping)

    def tenant_of(self, organisation_number: str | None) -> str | None:
        if organisation_number is None:
            return None
        return self.municipality_by_organisation.get(organisation_number)

    def organisations_of(self, municipality: str) -> list[str]:
        return sorted(org for org, m in self.municipality_by_organisation.items() if m == municipality)
