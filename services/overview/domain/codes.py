"""Service type codes: the national code list 9151 (IPLOS) and the municipality's own local codes.

The national list ships with the package (`service_types_9151.csv`); its display texts are the only
ones we show for national codes, whatever the caller sent. Services outside the list (physiotherapy,
occupational therapy, mental health…) use a local code system owned by the municipality, whose display
text comes from the source, since we have no list for it.
"""

from __future__ import annotations

import csv
import enum
import functools
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

NATIONAL_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9151"
LOCAL_SYSTEM_PREFIX = "urn:samhandling:local-service-type:"  # + municipality number, e.g. ...:1804

LOCAL_CODE = re.compile(r"[A-Za-z0-9._-]{1,20}")
# [0-9], not \d: \d also matches other scripts' digits, which int() would silently accept.
_DIGITS = re.compile(r"[0-9]+")
_CODE_LIST_PACKAGE = "services.overview.domain"
_CODE_LIST_FILE = "service_types_9151.csv"


class CodeSystem(enum.IntEnum):
    """The numbers match the protobuf enum; 0 (unspecified) is read as national by the submission."""

    NATIONAL_9151 = 1
    LOCAL = 2


@dataclass(frozen=True)
class ServiceType:
    system: CodeSystem
    code: str
    display: str
    display_en: str | None


def local_system_uri(municipality: str) -> str:
    """The code system URI of a municipality's local service types."""
    return f"{LOCAL_SYSTEM_PREFIX}{municipality}"


class ServiceTypeCatalog:
    """The national code list 9151, looked up by normalised code."""

    def __init__(self, entries: Mapping[str, ServiceType]) -> None:
        """`entries` are keyed by normalised code ("1", not "01")."""
        self._entries = MappingProxyType(dict(entries))

    @classmethod
    def national(cls) -> ServiceTypeCatalog:
        """The packaged list, read from the package data the first time it is asked for."""
        return _national_catalog()

    def normalise(self, code: str) -> str:
        """Sources send "01" or "1": a code of digits loses its padding and leading zeros.

        Anything that is not digits (after trimming surrounding whitespace) is returned unchanged.
        """
        trimmed = code.strip()
        if _DIGITS.fullmatch(trimmed):
            return trimmed.lstrip("0") or "0"  # not int(): it refuses very long digit strings
        return code

    def lookup(self, code: str) -> ServiceType | None:
        return self._entries.get(self.normalise(code))

    def __iter__(self) -> Iterator[ServiceType]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


@functools.cache
def _national_catalog() -> ServiceTypeCatalog:
    text = resources.files(_CODE_LIST_PACKAGE).joinpath(_CODE_LIST_FILE).read_text(encoding="utf-8")
    return ServiceTypeCatalog(_parse_code_list(text))


def _parse_code_list(text: str) -> dict[str, ServiceType]:
    entries: dict[str, ServiceType] = {}
    for row in csv.DictReader(io.StringIO(text)):
        code = row["code"].strip()
        if not _DIGITS.fullmatch(code):
            raise ValueError(f"code list 9151: code {code!r} is not a number")
        code = str(int(code))
        if code in entries:
            raise ValueError(f"code list 9151: code {code} appears twice")
        english = (row.get("name_en") or "").strip()
        entries[code] = ServiceType(
            system=CodeSystem.NATIONAL_9151,
            code=code,
            display=row["name_nb"].strip(),
            display_en=english or None,
        )
    return entries
