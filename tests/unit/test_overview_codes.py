import csv
import subprocess
import sys
from importlib import resources

import pytest

from services.overview.domain.codes import (
    LOCAL_CODE,
    LOCAL_SYSTEM_PREFIX,
    NATIONAL_SYSTEM,
    CodeSystem,
    ServiceType,
    ServiceTypeCatalog,
    local_system_uri,
)


def packaged_rows() -> list[dict[str, str]]:
    text = resources.files("services.overview.domain").joinpath("service_types_9151.csv").read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


def test_constants_match_the_contract() -> None:
    assert NATIONAL_SYSTEM == "urn:oid:2.16.578.1.12.4.1.1.9151"
    assert LOCAL_SYSTEM_PREFIX == "urn:samhandling:local-service-type:"
    assert local_system_uri("1804") == "urn:samhandling:local-service-type:1804"
    assert (int(CodeSystem.NATIONAL_9151), int(CodeSystem.LOCAL)) == (1, 2)


def test_national_catalog_holds_every_packaged_code() -> None:
    catalog = ServiceTypeCatalog.national()
    rows = packaged_rows()
    assert len(catalog) == len(rows) == 25
    for row in rows:
        assert catalog.lookup(row["code"]) == ServiceType(
            system=CodeSystem.NATIONAL_9151, code=row["code"], display=row["name_nb"], display_en=row["name_en"]
        )
    assert {service_type.code for service_type in catalog} == {row["code"] for row in rows}


def test_national_catalog_is_loaded_once() -> None:
    assert ServiceTypeCatalog.national() is ServiceTypeCatalog.national()


@pytest.mark.parametrize(
    ("sent", "normalised"),
    [
        ("1", "1"),
        ("01", "1"),
        ("001", "1"),
        (" 15 ", "15"),
        ("15", "15"),
        ("0", "0"),
        ("00", "0"),
        ("\t29\n", "29"),
        ("A1", "A1"),
        (" fysio ", " fysio "),  # not digits: unchanged, surrounding spaces included
        ("1.5", "1.5"),
        ("-1", "-1"),
        ("0" * 5000 + "15", "15"),
        ("9" * 5000, "9" * 5000),
        ("", ""),
        ("\u0661\u0665", "\u0661\u0665"),  # Arabic-Indic 15: not ASCII digits
        ("\uff11\uff15", "\uff11\uff15"),  # full-width 15
    ],
)
def test_normalise(sent: str, normalised: str) -> None:
    assert ServiceTypeCatalog.national().normalise(sent) == normalised


@pytest.mark.parametrize(("sent", "code"), [("01", "1"), ("1", "1"), (" 15 ", "15"), ("015", "15"), ("29", "29")])
def test_lookup_normalises(sent: str, code: str) -> None:
    found = ServiceTypeCatalog.national().lookup(sent)
    assert found is not None
    assert found.code == code
    assert found.system is CodeSystem.NATIONAL_9151


def test_lookup_gives_the_list_display_text() -> None:
    found = ServiceTypeCatalog.national().lookup("15")
    assert found is not None
    assert found.display == "Helsetjenester i hjemmet"
    assert found.display_en == "Home health care (home nursing)"


@pytest.mark.parametrize(
    "code", ["10", "12", "13", "16", "30", "0", "", " ", "A1", "1a", "\u0661\u0665", "\uff11\uff15"]
)
def test_lookup_of_codes_outside_the_list(code: str) -> None:
    assert ServiceTypeCatalog.national().lookup(code) is None


@pytest.mark.parametrize("code", ["F", "fysio", "PSYK-01", "a.b_c-d", "x" * 20, "0"])
def test_local_code_pattern_accepts(code: str) -> None:
    assert LOCAL_CODE.fullmatch(code)


@pytest.mark.parametrize("code", ["", "x" * 21, "fy sio", "fysiø", "a/b", "a:b", "kode\n"])
def test_local_code_pattern_rejects(code: str) -> None:
    assert not LOCAL_CODE.fullmatch(code)


def test_a_catalog_can_be_built_from_other_entries() -> None:
    entry = ServiceType(CodeSystem.NATIONAL_9151, "7", "Avlastning", None)
    catalog = ServiceTypeCatalog({"7": entry})
    assert catalog.lookup("007") is entry
    assert catalog.lookup("1") is None


def test_the_domain_imports_no_transport_storage_or_fhir_library() -> None:
    code = (
        "import sys\n"
        "import services.overview.domain.codes, services.overview.domain.services\n"
        "import services.overview.domain.submission, services.overview.domain.compilation\n"
        "import services.overview.domain.fhir\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'grpc', 'google', 'sqlalchemy', 'fhir'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
