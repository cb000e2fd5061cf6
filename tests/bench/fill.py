"""The overview tenant's data written straight into the storage tables with bulk SQL, as the storage
service itself would have written it after one SubmitServices per (patient, source): one `records` head
and one `record_versions` row (version 1) per source list, with the tenant's next change-feed
sequences, the request fingerprint storage computes, and `tenant_feeds.last_sequence` moved on. The
payloads are the overview's own `encode()` of lists read through the API's own submission mapper."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg
from samhandling.overview.v1 import overview_pb2

from services.overview.adapters.service_lists import CONTENT_TYPE, KIND, encode, record_key
from services.overview.api import mappers
from services.overview.domain.codes import ServiceTypeCatalog
from services.overview.domain.submission import SubmissionLimits
from services.platform.identifiers import person_number_problem
from services.platform.requests import scoped_idempotency_key
from services.storage.domain.records import Author, Payload, PutCommand, RecordRef

SOURCES = ("home-care-ehr", "alarm-central", "nursing-home-ehr")
VARIANTS = 5  # payload variants per source (dates shifted), chosen by patient number
SOURCE_HPR = "565505933"
FILL_BATCH = 10_000  # patients per transaction

_K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _check(digits: str, weights: tuple[int, ...]) -> int | None:
    check = (11 - sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11) % 11
    return None if check == 10 else check


def person_numbers(count: int, *, month_offset: int = 80) -> list[str]:
    """`count` distinct synthetic fødselsnumre with valid check digits, always the same ones: the
    individual number varies fastest, then the year, the month (+ `month_offset`, 80 as in Tenor, 65 as
    in NHN's test data, so two sets never meet) and the day. A body whose check digit would be 10 has no
    valid number and is skipped."""
    found: list[str] = []
    index = 0
    while len(found) < count:
        rest, individual = divmod(index, 1000)
        rest, year = divmod(rest, 100)
        rest, month = divmod(rest, 12)
        day = 1 + rest % 28
        index += 1
        body = f"{day:02d}{month_offset + 1 + month:02d}{year:02d}{individual:03d}"
        k1 = _check(body, _K1)
        if k1 is None:
            continue
        k2 = _check(body + str(k1), _K2)
        if k2 is None:
            continue
        found.append(f"{body}{k1}{k2}")
    return found


def _unit(name: str, phone: str) -> overview_pb2.Unit:
    return overview_pb2.Unit(name=name, phone=phone)


def _lists(today: date, shift: int) -> dict[str, list[overview_pb2.MunicipalService]]:
    """Three sources, three services each: active, on hold, planned and recently ended entries, and the
    safety alarm reported by two sources (same code, overlapping period, same unit: shown once)."""

    def day(offset: int) -> str:
        return (today + timedelta(days=offset)).isoformat()

    alarm_unit = _unit("Trygghetsalarmsentralen", "75555100")
    home_nursing = _unit("Hjemmesykepleien sone sør", "75555000")
    return {
        "home-care-ehr": [
            overview_pb2.MunicipalService(
                service_type_code="15",
                start_date=day(-200 - shift),
                weekly_extent="7.5",
                description="Hjemmetjeneste - sårstell",
                service_level="Hjemmeboende - Sone sør (hjemmesykepleie)",
                responsible_unit=home_nursing,
                primary_contact=overview_pb2.Contact(name="Kari Nordmann", role="primærkontakt", phone="75555001"),
            ),
            overview_pb2.MunicipalService(
                service_type_code="06", start_date=day(-400 - shift), responsible_unit=alarm_unit
            ),
            overview_pb2.MunicipalService(
                service_type_code="1",
                start_date=day(-300 - shift),
                end_date=day(-30 + shift % 20),
                weekly_extent="2 timer",
                responsible_unit=_unit("Praktisk bistand", "75555200"),
            ),
        ],
        "alarm-central": [
            overview_pb2.MunicipalService(
                service_type_code="6", start_date=day(-390 - shift), responsible_unit=alarm_unit, key_box=True
            ),
            overview_pb2.MunicipalService(
                service_type_code="5",
                start_date=day(14 + shift),
                weekly_extent="5 dager",
                responsible_unit=_unit("Matombringing Bærum", "75555300"),
            ),
            overview_pb2.MunicipalService(
                service_type_code="9",
                start_date=day(-120 - shift),
                temporary_cessation=True,
                weekly_extent="3 timer per uke",
                responsible_unit=_unit("Støttekontakttjenesten", "75555400"),
            ),
        ],
        "nursing-home-ehr": [
            overview_pb2.MunicipalService(
                service_type_code="18",
                start_date=day(-40 - shift),
                end_date=day(-10 - shift % 5),
                stay_type="korttidsopphold",
                responsible_unit=_unit("Korttidsavdelingen", "75555500"),
            ),
            overview_pb2.MunicipalService(
                service_type_code="4",
                start_date=day(-60 - shift),
                weekly_extent="15 minutter",
                description="Dagsenter to dager i uka",
                responsible_unit=_unit("Dagsenteret", "75555600"),
            ),
            overview_pb2.MunicipalService(
                service_type_code="21",
                start_date=day(30 + shift),
                stay_type="langtidsopphold",
                needs_caption=True,
                responsible_unit=_unit("Sykehjemmet", "75555700"),
            ),
        ],
    }


def payloads(today: date) -> list[bytes]:
    """The encoded lists, source-major: `payloads[source_index * VARIANTS + variant]`."""
    catalog, limits = ServiceTypeCatalog.national(), SubmissionLimits()
    variants = [_lists(today, shift * 3) for shift in range(VARIANTS)]
    return [
        encode(mappers.submitted_services(variant[source], catalog, limits))
        for source in SOURCES
        for variant in variants
    ]


@dataclass(frozen=True)
class FillTarget:
    tenant: str
    organisation_number: str


def fingerprint(target: FillTarget, patient_id: str, source: str, payload: bytes) -> bytes:
    """What storage computes for the same put (used to check the SQL below)."""
    command = PutCommand(
        RecordRef(target.tenant, patient_id, KIND, record_key(source)),
        Payload(payload, CONTENT_TYPE),
        scoped_idempotency_key("overview", f"bench-fill-{patient_id}"),
        None,
        Author(source, target.organisation_number, SOURCE_HPR),
    )
    return command.fingerprint()


def _length_prefixed(expression: str) -> str:
    return f"int8send(octet_length({expression})::int8) || convert_to({expression}, 'UTF8')"


# $1 tenant, $2 patient ids (in order), $3 sources, $4 payloads (source-major), $5 variants, $6 kind,
# $7 content type, $8 organisation, $9 HPR, $10 first sequence - 1, $11 index of the first patient.
_VERSIONS_SQL = f"""
INSERT INTO record_versions (tenant, patient_id, kind, key, version, sequence, payload, content_type,
                             source_system, organisation_number, author_hpr_number, idempotency_key,
                             request_fingerprint)
SELECT $1::text, p.id, $6::text, s.name, 1, $10::bigint + (p.ord - 1) * cardinality($3::text[]) + s.ord, body.payload,
       $7::text, s.name, $8::text, $9::text, 'overview:bench-fill-' || p.id,
       sha256({_length_prefixed("p.id")} || {_length_prefixed("$6::text")} || {_length_prefixed("s.name")}
              || {_length_prefixed("$7::text")} || int8send(0::int8) || {_length_prefixed("$8::text")}
              || {_length_prefixed("$9::text")} || body.payload)
FROM unnest($2::text[]) WITH ORDINALITY AS p(id, ord)
CROSS JOIN unnest($3::text[]) WITH ORDINALITY AS s(name, ord)
CROSS JOIN LATERAL (
    SELECT ($4::bytea[])[(s.ord - 1) * $5::int + ((p.ord - 1 + $11::int) % $5::int) + 1] AS payload
) AS body
ORDER BY p.ord, s.ord
"""

_HEADS_SQL = """
INSERT INTO records (tenant, patient_id, kind, key, latest_version)
SELECT $1::text, p.id, $4::text, s.name, 1
FROM unnest($2::text[]) AS p(id) CROSS JOIN unnest($3::text[]) AS s(name)
"""


async def fill(
    admin: asyncpg.Connection,
    target: FillTarget,
    patients: list[str],
    first_index: int,
    today: date,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Writes every source's list for `patients` (the fill's patients from `first_index` on); returns the
    rows written to `record_versions`. One transaction per batch, each taking the tenant's next
    sequences under the feed row's lock, as storage does."""
    encoded = payloads(today)
    written = 0
    for start in range(0, len(patients), FILL_BATCH):
        batch = patients[start : start + FILL_BATCH]
        async with admin.transaction():
            await admin.execute(
                "INSERT INTO tenant_feeds (tenant, last_sequence) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING",
                target.tenant,
            )
            last = await admin.fetchval(
                "SELECT last_sequence FROM tenant_feeds WHERE tenant = $1 FOR UPDATE", target.tenant
            )
            await admin.execute(_HEADS_SQL, target.tenant, batch, list(SOURCES), KIND)
            await admin.execute(
                _VERSIONS_SQL,
                target.tenant,
                batch,
                list(SOURCES),
                encoded,
                VARIANTS,
                KIND,
                CONTENT_TYPE,
                target.organisation_number,
                SOURCE_HPR,
                last,
                first_index + start,
            )
            rows = len(batch) * len(SOURCES)
            await admin.execute(
                "UPDATE tenant_feeds SET last_sequence = last_sequence + $2 WHERE tenant = $1", target.tenant, rows
            )
        written += rows
        if progress is not None:
            progress(start + len(batch))
    await admin.execute("ANALYZE records")
    await admin.execute("ANALYZE record_versions")
    await admin.execute("ANALYZE tenant_feeds")
    return written


async def check_fill(admin: asyncpg.Connection, target: FillTarget, patient_id: str) -> None:
    """The filled rows are what storage would have written: fingerprints match, sequences are dense."""
    rows = await admin.fetch(
        "SELECT key, payload, request_fingerprint FROM record_versions"
        " WHERE tenant = $1 AND patient_id = $2 AND kind = $3",
        target.tenant,
        patient_id,
        KIND,
    )
    if len(rows) != len(SOURCES):
        raise RuntimeError(f"fill check: {len(rows)} lists for {patient_id}, expected {len(SOURCES)}")
    for row in rows:
        if bytes(row["request_fingerprint"]) != fingerprint(target, patient_id, row["key"], bytes(row["payload"])):
            raise RuntimeError(f"fill check: fingerprint of {patient_id}/{row['key']} differs from storage's")
    feed, top, count = await admin.fetchrow(
        "SELECT (SELECT last_sequence FROM tenant_feeds WHERE tenant = $1),"
        " max(sequence), count(*) FROM record_versions WHERE tenant = $1",
        target.tenant,
    )
    if not feed == top == count:
        raise RuntimeError(f"fill check: feed at {feed}, highest sequence {top}, {count} versions")
    for problem in (person_number_problem(patient_id),):
        if problem:
            raise RuntimeError(f"fill check: {patient_id}: {problem}")


def spread(items: list[str], count: int) -> Iterator[str]:
    """`count` items spread evenly over `items` (all of them when there are fewer)."""
    if count >= len(items):
        yield from items
        return
    step = len(items) / count
    for index in range(count):
        yield items[int(index * step)]
