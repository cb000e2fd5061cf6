import base64
import json
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from services.platform.errors import FieldViolation, InvalidArgument
from services.storage.api.mappers import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    encode_page_token,
    fit_page,
    key_after,
    page_size,
    version_after,
)
from services.storage.domain.records import (
    MAX_VERSION,
    Author,
    Payload,
    PutCommand,
    RecordRef,
    RecordValidator,
    RecordVersion,
)

LIMIT = 16
PATIENT = "17057549955"
NHN_TEST_PATIENT = "22750884907"


def command(**changes: Any) -> PutCommand:
    ref_fields = {"tenant": "1804", "patient_id": PATIENT, "kind": "news2.assessment", "key": "obs-1"}
    ref = RecordRef(**(ref_fields | {k: v for k, v in changes.items() if k in ref_fields}))
    payload = Payload(changes.get("data", b'{"score": 3}'), changes.get("content_type", "application/json"))
    return PutCommand(
        ref=ref,
        payload=payload,
        idempotency_key=changes.get("idempotency_key", "put-0001"),
        expected_version=changes.get("expected_version"),
        author=changes.get("author", Author("dev-ehr", "972418013", "565501872")),
    )


def validator(check_birth_dates: bool = False) -> RecordValidator:
    return RecordValidator(check_birth_dates=check_birth_dates, max_payload_bytes=LIMIT)


def violated_fields(put: PutCommand, check_birth_dates: bool = False) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        validator(check_birth_dates).put(put)
    return [violation.field for violation in caught.value.violations]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"data": b""},
        {"data": b"x" * LIMIT},
        {"patient_id": NHN_TEST_PATIENT},
        {"patient_id": "71018512372"},
        {"kind": "overview.service_list"},
        {"kind": "a.b"},
        {"kind": "news2.v2.assessment_2"},
        {"kind": "a." + "b" * 62},
        {"key": "k"},
        {"key": "urn:oid:2.16.578/abc_def+x=y@host-1"},
        {"key": "k" * 200},
        {"content_type": "text/plain"},
        {"content_type": "application/fhir+json; fhirVersion=4.0"},
        {"content_type": "application/vnd.example.v1+json;charset=utf-8"},
        {"idempotency_key": "a"},
        {"idempotency_key": "x" * 128},
        {"idempotency_key": "3f2c!#$%&'()*+,-./:;<=>?@[]^_`{|}~"},
        {"expected_version": 0},
        {"expected_version": 7},
    ],
    ids=repr,
)
def test_valid_command_passes(changes: dict[str, Any]) -> None:
    validator().put(command(**changes))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tenant": "180"}, "tenant"),
        ({"tenant": ""}, "tenant"),
        ({"tenant": "18045"}, "tenant"),
        ({"patient_id": "17057549956"}, "patient_id"),
        ({"patient_id": "1705754995"}, "patient_id"),
        ({"patient_id": ""}, "patient_id"),
        ({"kind": "news2"}, "kind"),
        ({"kind": "News2.assessment"}, "kind"),
        ({"kind": "news2.assessment."}, "kind"),
        ({"kind": "2news.assessment"}, "kind"),
        ({"kind": "news2-assessment.x"}, "kind"),
        ({"kind": ""}, "kind"),
        ({"kind": "a." + "b" * 63}, "kind"),
        ({"key": ""}, "key"),
        ({"key": "-leading-dash"}, "key"),
        ({"key": "with space"}, "key"),
        ({"key": "ø"}, "key"),
        ({"key": "k" * 201}, "key"),
        ({"data": b"x" * (LIMIT + 1)}, "payload.data"),
        ({"content_type": ""}, "payload.content_type"),
        ({"content_type": "json"}, "payload.content_type"),
        ({"content_type": "application/"}, "payload.content_type"),
        ({"content_type": "/json"}, "payload.content_type"),
        ({"content_type": "application/json\n"}, "payload.content_type"),
        ({"content_type": "text/plain; " + "x" * 120}, "payload.content_type"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "x" * 129}, "idempotency_key"),
        ({"idempotency_key": "put 0001"}, "idempotency_key"),
        ({"idempotency_key": " put-0001"}, "idempotency_key"),
        ({"idempotency_key": "put-0001\t"}, "idempotency_key"),
        ({"idempotency_key": "nøkkel"}, "idempotency_key"),
        ({"expected_version": -1}, "expected_version"),
    ],
    ids=repr,
)
def test_bad_field_is_named(changes: dict[str, Any], field: str) -> None:
    assert violated_fields(command(**changes)) == [field]


def test_every_bad_field_is_reported_at_once() -> None:
    put = command(
        tenant="x",
        patient_id="123",
        kind="bad",
        key="",
        data=b"x" * (LIMIT + 1),
        content_type="nope",
        idempotency_key="",
        expected_version=-5,
    )

    assert violated_fields(put) == [
        "tenant",
        "patient_id",
        "kind",
        "key",
        "payload.data",
        "payload.content_type",
        "idempotency_key",
        "expected_version",
    ]


def test_violation_describes_the_payload_limit() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validator().put(command(data=b"x" * (LIMIT + 1)))

    assert caught.value.violations == (FieldViolation("payload.data", f"is larger than the limit of {LIMIT} bytes"),)


def test_synthetic_patient_is_rejected_when_birth_dates_are_checked() -> None:
    assert violated_fields(command(patient_id=NHN_TEST_PATIENT), check_birth_dates=True) == ["patient_id"]
    validator(check_birth_dates=True).put(command(patient_id=PATIENT))


def test_ref_returns_violations_instead_of_raising() -> None:
    assert validator().ref("1804", PATIENT, "news2.assessment", "obs-1") == []
    assert [v.field for v in validator().ref("18", PATIENT, "news2", "a b")] == ["tenant", "kind", "key"]


def test_scope_appends_to_the_given_list() -> None:
    violations = [FieldViolation("page_size", "must not be negative")]

    validator().scope("1804", "17057549956", "news2.assessment", violations)

    assert [v.field for v in violations] == ["page_size", "patient_id"]


def test_scope_accepts_a_valid_scope() -> None:
    violations: list[FieldViolation] = []

    validator().scope("3201", PATIENT, "overview.services", violations)

    assert violations == []


def test_fingerprint_is_equal_for_equal_commands() -> None:
    assert command().fingerprint() == command().fingerprint()
    assert command(expected_version=3).fingerprint() == command(expected_version=3).fingerprint()


@pytest.mark.parametrize(
    "changes",
    [
        {"patient_id": "01019012480"},
        {"kind": "news2.measurement"},
        {"key": "obs-2"},
        {"content_type": "application/fhir+json"},
        {"data": b'{"score": 4}'},
        {"data": b""},
        {"expected_version": 0},
        {"expected_version": 1},
    ],
    ids=repr,
)
def test_fingerprint_differs_when_the_content_differs(changes: dict[str, Any]) -> None:
    assert command(**changes).fingerprint() != command().fingerprint()


def test_fingerprint_distinguishes_expected_versions() -> None:
    assert command(expected_version=1).fingerprint() != command(expected_version=10).fingerprint()


def test_fingerprint_is_not_fooled_by_moving_characters_between_fields() -> None:
    first = command(key="obs-1", content_type="text/plain")
    second = command(key="obs-1t", content_type="ext/plain")

    assert first.fingerprint() != second.fingerprint()


def test_fingerprint_separates_the_last_field_from_the_payload() -> None:
    first = command(content_type="text/plain", data=b"2")
    second = replace(command(content_type="text/plain", data=b""), expected_version=2)

    assert first.fingerprint() != second.fingerprint()


@pytest.mark.parametrize(
    ("requested", "size"),
    [
        (0, DEFAULT_PAGE_SIZE),
        (1, 1),
        (50, 50),
        (MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        (MAX_PAGE_SIZE + 1, MAX_PAGE_SIZE),
    ],
)
def test_page_size(requested: int, size: int) -> None:
    assert page_size(requested) == size


def test_default_and_max_page_size() -> None:
    assert (DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE) == (100, 1000)


@pytest.mark.parametrize("requested", [-1, -1000])
def test_negative_page_size_is_rejected(requested: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        page_size(requested)

    assert [v.field for v in caught.value.violations] == ["page_size"]


DECODERS = {int: version_after, str: key_after}


@pytest.mark.parametrize(
    ("position", "kind"),
    [
        (0, int),
        (42, int),
        (MAX_VERSION, int),
        ("source-a", str),
        ("1804/17057549955/news2.assessment/obs-1", str),
    ],
)
def test_page_token_round_trip(position: int | str, kind: type) -> None:
    token = encode_page_token(position)

    assert DECODERS[kind](token) == position
    assert DECODERS[kind](token).__class__ is kind


def test_empty_page_token_means_the_first_page() -> None:
    assert (version_after(""), key_after("")) == (0, "")


def b64_json(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        ("garbage", int),
        ("not a token!", int),
        ("%%%%", int),
        ("ø", int),
        ("e30=", int),
        (b64_json([1, 2]), int),
        (b64_json("after"), int),
        (b64_json(5), int),
        (b64_json({"before": 5}), int),
        (b64_json({"after": None}), int),
        (b64_json({"after": "5"}), int),
        (b64_json({"after": 1.5}), int),
        (b64_json({"after": True}), int),
        (b64_json({"after": -1}), int),
        (b64_json({"after": MAX_VERSION + 1}), int),
        (b64_json({"after": 5}), str),
        (b64_json({"after": "has space"}), str),
        (b64_json({"after": "nul\u0000"}), str),
        (b64_json({"after": ""}), str),
        (encode_page_token(7)[:-3], int),
    ],
    ids=repr,
)
def test_garbage_page_token_is_invalid_argument(token: str, kind: type) -> None:
    with pytest.raises(InvalidArgument) as caught:
        DECODERS[kind](token)

    assert [v.field for v in caught.value.violations] == ["page_token"]


def version_of(size: int, number: int) -> RecordVersion:
    return RecordVersion(
        ref=RecordRef("1804", PATIENT, "news2.assessment", "obs-1"),
        version=number,
        payload=Payload(b"x" * size, "application/octet-stream"),
        author=Author("ehr", "972418013", None),
        recorded_at=datetime(2026, 1, 1),
        sequence=number,
    )


@pytest.mark.parametrize(
    ("sizes", "page_size_", "budget", "expected_count", "more"),
    [
        ([10, 10, 10], 5, 100, 3, False),
        ([10, 10, 10], 2, 100, 2, True),
        ([40, 40, 40], 5, 100, 2, True),
        ([500, 10], 5, 100, 1, True),
        ([100], 5, 100, 1, False),
    ],
)
def test_pages_stop_at_the_byte_budget_but_always_make_progress(sizes, page_size_, budget, expected_count, more):
    records = [version_of(size, n) for n, size in enumerate(sizes, start=1)]
    page, has_more = fit_page(records, page_size_, budget)
    assert (len(page), has_more) == (expected_count, more)


def test_expected_version_beyond_the_database_range_is_invalid() -> None:
    validator = RecordValidator(check_birth_dates=False, max_payload_bytes=LIMIT)
    with pytest.raises(InvalidArgument) as caught:
        validator.put(command(expected_version=MAX_VERSION + 1))
    assert [v.field for v in caught.value.violations] == ["expected_version"]


def test_fingerprint_includes_the_author() -> None:
    base = command()
    other_clinician = replace(base, author=Author(base.author.source_system, base.author.organisation_number, "999"))
    assert base.fingerprint() != other_clinician.fingerprint()
