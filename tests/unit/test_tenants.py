import pytest

from services.platform.tenants import DEFAULT_TENANTS, TenantTable

BODO, BAERUM = "1804", "3201"
BODO_ORG, BAERUM_ORG = "972418013", "935478715"
OTHER_ORG = "123456785"


def test_default_table_maps_the_pilot_municipalities() -> None:
    table = TenantTable.parse(DEFAULT_TENANTS)

    assert dict(table.municipality_by_organisation) == {BODO_ORG: BODO, BAERUM_ORG: BAERUM}


def test_municipality_with_several_organisations() -> None:
    table = TenantTable.parse(f"{BODO}={BODO_ORG}, {BODO}={OTHER_ORG},{BAERUM}={BAERUM_ORG}")

    assert table.organisations_of(BODO) == sorted([BODO_ORG, OTHER_ORG])
    assert table.organisations_of(BAERUM) == [BAERUM_ORG]
    assert table.tenant_of(OTHER_ORG) == BODO


def test_whitespace_and_empty_entries_are_ignored() -> None:
    table = TenantTable.parse(f" {BODO} = {BODO_ORG} ,, \n{BAERUM}={BAERUM_ORG},")

    assert dict(table.municipality_by_organisation) == {BODO_ORG: BODO, BAERUM_ORG: BAERUM}


def test_same_entry_twice_is_accepted() -> None:
    table = TenantTable.parse(f"{BODO}={BODO_ORG},{BODO}={BODO_ORG}")

    assert table.organisations_of(BODO) == [BODO_ORG]


def test_organisation_listed_for_two_municipalities_is_rejected() -> None:
    with pytest.raises(ValueError, match=f"organisation {BODO_ORG} is listed for two municipalities"):
        TenantTable.parse(f"{BODO}={BODO_ORG},{BAERUM}={BODO_ORG}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{BODO}:{BODO_ORG}", "must look like 1804=972418013"),
        (BODO_ORG, "must look like 1804=972418013"),
        (f"180={BODO_ORG}", "municipality must be a four-digit municipality number"),
        (f"={BODO_ORG}", "municipality must be a four-digit municipality number"),
        (f"{BODO}=972418012", "organisation number check digit does not match"),
        (f"{BODO}=97241801", "organisation number must be 9 digits"),
        (f"{BODO}=", "organisation number must be 9 digits"),
        (f"{BODO}={BODO_ORG}={BAERUM_ORG}", "organisation number must be 9 digits"),
        ("", "the tenant table is empty"),
        (" , ,", "the tenant table is empty"),
    ],
)
def test_malformed_table_is_rejected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TenantTable.parse(text)


def test_bad_entry_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"tenant entry '1804=972418012'"):
        TenantTable.parse(f"{BAERUM}={BAERUM_ORG},1804=972418012")


@pytest.mark.parametrize(
    ("organisation", "tenant"),
    [(BODO_ORG, BODO), (BAERUM_ORG, BAERUM), (OTHER_ORG, None), (None, None), ("", None)],
)
def test_tenant_of(organisation: str | None, tenant: str | None) -> None:
    assert TenantTable.parse(DEFAULT_TENANTS).tenant_of(organisation) == tenant


def test_organisations_of_unknown_municipality_is_empty() -> None:
    assert TenantTable.parse(DEFAULT_TENANTS).organisations_of("0301") == []
