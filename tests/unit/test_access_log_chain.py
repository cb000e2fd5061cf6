"""The access log's per-tenant hash chain: linking, verification, and detection of every kind of tampering."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.access.domain.access_log import (
    GENESIS_HASH,
    Actor,
    ChainedEntry,
    ChainProblem,
    ChainVerifier,
    LogEntry,
    canonical_content,
    chain,
    entry_hash,
    verify,
)
from services.access.domain.decisions import Action, DataKind

START = datetime(2025, 3, 4, 10, 15, 30, 123456, tzinfo=UTC)


def actor(**changes: Any) -> Actor:
    return replace(
        Actor(
            hpr_number="565501872",
            name="Lege Legesen",
            organisation_number="972418013",
            unit_organisation_number="974795361",
            client_id="ehr-vendor",
            is_patient=False,
        ),
        **changes,
    )


def entry(number: int, **changes: Any) -> LogEntry:
    return replace(
        LogEntry(
            entry_id=f"entry-{number}",
            tenant="1804",
            decided_at=START + timedelta(seconds=number),
            patient_id="17057549955",
            actor=actor(),
            purpose_of_use="TREAT",
            decision_ref="ref-1",
            data_kind=DataKind.VITAL_SIGNS,
            action=Action.READ,
            allowed=True,
            reason=None,
            break_the_glass=False,
            follow_up=False,
            on_patients_request=False,
            subject_hpr_number=None,
        ),
        **changes,
    )


def make_chain(count: int = 5) -> list[ChainedEntry]:
    return chain([entry(number) for number in range(1, count + 1)], last_sequence=0, last_hash=GENESIS_HASH)


def expected_hash(previous: bytes, item: LogEntry, sequence: int) -> bytes:
    return hashlib.sha256(previous + canonical_content(item, sequence)).digest()


# --- chain() ---


def test_genesis_is_32_zero_bytes() -> None:
    assert GENESIS_HASH == b"\x00" * 32


def test_chain_from_genesis_links_every_entry() -> None:
    chained = make_chain(4)
    assert [item.sequence for item in chained] == [1, 2, 3, 4]
    assert [item.entry.entry_id for item in chained] == ["entry-1", "entry-2", "entry-3", "entry-4"]
    assert chained[0].previous_hash == b"\x00" * 32
    for prior, item in pairwise(chained):
        assert item.previous_hash == prior.entry_hash
    for item in chained:
        assert len(item.entry_hash) == 32
        assert item.entry_hash == expected_hash(item.previous_hash, item.entry, item.sequence)
    assert len({item.entry_hash for item in chained}) == 4


def test_chain_continues_from_the_head() -> None:
    head = make_chain(3)
    more = chain([entry(4), entry(5)], last_sequence=3, last_hash=head[-1].entry_hash)
    assert [item.sequence for item in more] == [4, 5]
    assert more[0].previous_hash == head[-1].entry_hash
    assert more[1].previous_hash == more[0].entry_hash
    # Chaining in two steps gives the same chain as in one.
    assert head + more == make_chain(5)
    assert verify(head + more).intact


def test_chain_of_nothing() -> None:
    assert chain([], last_sequence=7, last_hash=b"\x01" * 32) == []


def test_sequence_is_part_of_the_hash() -> None:
    assert entry_hash(GENESIS_HASH, entry(1), 1) != entry_hash(GENESIS_HASH, entry(1), 2)


def test_previous_hash_is_part_of_the_hash() -> None:
    assert entry_hash(GENESIS_HASH, entry(1), 1) != entry_hash(b"\x01" * 32, entry(1), 1)


# --- verify() on intact chains ---


@pytest.mark.parametrize("count", [0, 1, 2, 10])
def test_verify_intact(count: int) -> None:
    chained = make_chain(count)
    result = verify(chained)
    assert result.intact
    assert result.problem is None
    assert result.broken_sequence is None
    assert result.broken_entry_id is None
    assert result.entries_checked == count
    assert result.head_hash == (chained[-1].entry_hash if chained else b"\x00" * 32)


def test_verify_accepts_a_generator() -> None:
    assert verify(item for item in make_chain(3)).entries_checked == 3


def test_verifier_with_matching_head_is_intact() -> None:
    chained = make_chain(5)
    verifier = ChainVerifier()
    assert all(verifier.check(item) for item in chained)
    result = verifier.result(head_sequence=5, head_hash=chained[-1].entry_hash)
    assert result.intact
    assert result.entries_checked == 5


def test_verifier_empty_log_with_empty_head() -> None:
    assert ChainVerifier().result(head_sequence=0, head_hash=b"\x00" * 32).intact


# --- tampering with content ---

LOG_ENTRY_CHANGES = {
    "entry_id": "entry-forged",
    "tenant": "3201",
    "decided_at": START + timedelta(seconds=3, microseconds=1),
    "patient_id": "01019012480",
    "actor": actor(hpr_number="565505933"),
    "purpose_of_use": "BTG",
    "decision_ref": "ref-2",
    "data_kind": DataKind.SERVICES_OVERVIEW,
    "action": Action.WRITE,
    "allowed": False,
    "reason": "PATIENT_OBJECTED",
    "break_the_glass": True,
    "follow_up": True,
    "on_patients_request": True,
    "subject_hpr_number": "565505933",
}
ACTOR_CHANGES = {
    "hpr_number": "565505933",
    "name": "Someone Else",
    "organisation_number": "935478715",
    "unit_organisation_number": "974795362",
    "client_id": "other-ehr",
    "is_patient": True,
}
# None → "" must be a change too: null and an empty string are different content.
NONE_TO_EMPTY = {
    "entry": ["purpose_of_use", "decision_ref", "reason", "subject_hpr_number"],
    "actor": ["hpr_number", "name", "unit_organisation_number"],
}


def test_every_field_has_a_tampering_case() -> None:
    assert set(LOG_ENTRY_CHANGES) == {field.name for field in fields(LogEntry)}
    assert set(ACTOR_CHANGES) == {field.name for field in fields(Actor)}


Change = Callable[[LogEntry], LogEntry]


def set_entry(**changes: Any) -> Change:
    return lambda original: replace(original, **changes)


def set_actor(**changes: Any) -> Change:
    return lambda original: replace(original, actor=replace(original.actor, **changes))


def shift_time(delta: timedelta) -> Change:
    return lambda original: replace(original, decided_at=original.decided_at + delta)


def tampered_cases() -> list[tuple[str, Change]]:
    cases = [(f"entry.{name}", set_entry(**{name: value})) for name, value in LOG_ENTRY_CHANGES.items()]
    cases += [(f"actor.{name}", set_actor(**{name: value})) for name, value in ACTOR_CHANGES.items()]
    cases += [(f"entry.{name}-to-empty", set_entry(**{name: ""})) for name in NONE_TO_EMPTY["entry"]]
    cases += [(f"actor.{name}-to-empty", set_actor(**{name: ""})) for name in NONE_TO_EMPTY["actor"]]
    cases += [
        ("entry.decided_at-plus-microsecond", shift_time(timedelta(microseconds=1))),
        ("entry.decided_at-minus-microsecond", shift_time(timedelta(microseconds=-1))),
        ("entry.decided_at-one-hour", shift_time(timedelta(hours=1))),
        ("entry.data_kind-consent", set_entry(data_kind=DataKind.CONSENT)),
        ("entry.denied-with-other-reason", set_entry(allowed=False, reason="TENANT_MISMATCH")),
        ("entry.patient_id-trailing-space", set_entry(patient_id="17057549955 ")),
        ("actor.name-non-ascii", set_actor(name="Lege Legesén")),
    ]
    return cases


CASES = tampered_cases()


def entry_with_nones(number: int) -> LogEntry:
    return entry(
        number,
        purpose_of_use=None,
        decision_ref=None,
        reason=None,
        subject_hpr_number=None,
        actor=actor(hpr_number=None, name=None, unit_organisation_number=None),
    )


@pytest.mark.parametrize("position", [1, 3, 5], ids=["first", "middle", "last"])
@pytest.mark.parametrize("change", [change for _, change in CASES], ids=[name for name, _ in CASES])
@pytest.mark.parametrize("base", [entry, entry_with_nones], ids=["values", "nones"])
def test_changed_field_is_a_hash_mismatch(base: Callable[[int], LogEntry], position: int, change: Change) -> None:
    chained = chain([base(n) for n in range(1, 6)], last_sequence=0, last_hash=GENESIS_HASH)
    original = chained[position - 1]
    forged_entry = change(original.entry)
    # The case really changes something.
    assert forged_entry != original.entry
    chained[position - 1] = replace(original, entry=forged_entry)

    result = verify(chained)

    assert result.problem is ChainProblem.HASH_MISMATCH
    assert result.broken_sequence == position
    assert result.broken_entry_id == forged_entry.entry_id
    assert result.entries_checked == position - 1
    assert not result.intact


def test_changed_entry_hash_is_detected() -> None:
    chained = make_chain(5)
    chained[2] = replace(chained[2], entry_hash=b"\x11" * 32)
    result = verify(chained)
    assert (result.problem, result.broken_sequence) == (ChainProblem.HASH_MISMATCH, 3)


def test_rehashed_entry_breaks_the_link_to_the_next() -> None:
    # Changing an entry and recomputing its own hash moves the break to the following entry.
    chained = make_chain(5)
    forged = replace(chained[2].entry, allowed=False, reason="PATIENT_OBJECTED")
    chained[2] = replace(chained[2], entry=forged, entry_hash=expected_hash(chained[2].previous_hash, forged, 3))
    result = verify(chained)
    assert (result.problem, result.broken_sequence, result.broken_entry_id) == (
        ChainProblem.CHAIN_BROKEN,
        4,
        "entry-4",
    )
    assert result.entries_checked == 3


# --- tampering with the chain ---


@pytest.mark.parametrize("missing", [2, 3, 4])
def test_removed_middle_entry_is_a_sequence_gap(missing: int) -> None:
    chained = make_chain(5)
    del chained[missing - 1]
    result = verify(chained)
    assert result.problem is ChainProblem.SEQUENCE_GAP
    assert result.broken_sequence == missing
    assert result.broken_entry_id is None
    assert result.entries_checked == missing - 1


def test_removed_first_entry_is_a_sequence_gap() -> None:
    result = verify(make_chain(5)[1:])
    assert (result.problem, result.broken_sequence, result.entries_checked) == (ChainProblem.SEQUENCE_GAP, 1, 0)


def test_reordered_pair_in_sequence_order() -> None:
    # Two rows swap their content and links but keep their sequence numbers (as read ORDER BY sequence).
    chained = make_chain(5)
    second, third = chained[1], chained[2]
    chained[1] = replace(third, sequence=2)
    chained[2] = replace(second, sequence=3)
    result = verify(chained)
    assert result.problem is ChainProblem.CHAIN_BROKEN
    assert result.broken_sequence == 2
    assert result.broken_entry_id == "entry-3"


def test_reordered_entry_contents() -> None:
    # Only the entry contents are swapped; the stored links stay where they were.
    chained = make_chain(5)
    second, third = chained[1], chained[2]
    chained[1] = replace(second, entry=third.entry)
    chained[2] = replace(third, entry=second.entry)
    result = verify(chained)
    assert (result.problem, result.broken_sequence, result.broken_entry_id) == (
        ChainProblem.HASH_MISMATCH,
        2,
        "entry-3",
    )


def test_reordered_pair_in_iteration_order() -> None:
    chained = make_chain(5)
    chained[1], chained[2] = chained[2], chained[1]
    result = verify(chained)
    assert not result.intact
    assert result.broken_sequence == 2
    assert result.entries_checked == 1


def test_inserted_forged_entry_with_renumbered_tail() -> None:
    # A forger inserts a correctly hashed entry after sequence 2 and renumbers the rest; the next original
    # entry no longer links to its predecessor.
    chained = make_chain(5)
    forged = entry(99, entry_id="entry-forged", allowed=False, reason="PATIENT_OBJECTED")
    forged_item = ChainedEntry(forged, 3, chained[1].entry_hash, expected_hash(chained[1].entry_hash, forged, 3))
    tampered = chained[:2] + [forged_item] + [replace(item, sequence=item.sequence + 1) for item in chained[2:]]
    result = verify(tampered)
    assert (result.problem, result.broken_sequence, result.broken_entry_id) == (
        ChainProblem.CHAIN_BROKEN,
        4,
        "entry-3",
    )
    assert result.entries_checked == 3


def test_inserted_forged_entry_with_a_made_up_hash() -> None:
    chained = make_chain(5)
    forged = entry(99, entry_id="entry-forged")
    forged_item = ChainedEntry(forged, 3, chained[1].entry_hash, b"\x42" * 32)
    tampered = chained[:2] + [forged_item] + [replace(item, sequence=item.sequence + 1) for item in chained[2:]]
    result = verify(tampered)
    assert (result.problem, result.broken_sequence, result.broken_entry_id) == (
        ChainProblem.HASH_MISMATCH,
        3,
        "entry-forged",
    )


def test_inserted_entry_with_a_duplicate_sequence() -> None:
    chained = make_chain(5)
    forged = entry(99, entry_id="entry-forged")
    forged_item = ChainedEntry(forged, 3, chained[1].entry_hash, expected_hash(chained[1].entry_hash, forged, 3))
    result = verify([*chained[:2], forged_item, *chained[2:]])
    assert not result.intact
    assert result.entries_checked == 3


@pytest.mark.parametrize("position", [1, 2, 5])
def test_replaced_previous_hash_is_chain_broken(position: int) -> None:
    chained = make_chain(5)
    chained[position - 1] = replace(chained[position - 1], previous_hash=b"\x07" * 32)
    result = verify(chained)
    assert result.problem is ChainProblem.CHAIN_BROKEN
    assert result.broken_sequence == position
    assert result.broken_entry_id == f"entry-{position}"
    assert result.entries_checked == position - 1


def test_replaced_previous_hash_with_rehash_is_still_chain_broken() -> None:
    # Recomputing the entry's hash over the false link does not help: the link itself is checked.
    chained = make_chain(5)
    item = chained[2]
    fake = b"\x07" * 32
    chained[2] = replace(item, previous_hash=fake, entry_hash=expected_hash(fake, item.entry, item.sequence))
    result = verify(chained)
    assert (result.problem, result.broken_sequence) == (ChainProblem.CHAIN_BROKEN, 3)


def test_verification_stops_at_the_first_break() -> None:
    chained = make_chain(5)
    chained[1] = replace(chained[1], entry=replace(chained[1].entry, allowed=False))
    chained[3] = replace(chained[3], previous_hash=b"\x07" * 32)
    result = verify(chained)
    assert (result.problem, result.broken_sequence) == (ChainProblem.HASH_MISMATCH, 2)
    assert result.head_hash == chained[0].entry_hash


def test_verifier_check_returns_false_on_a_break_and_keeps_the_first() -> None:
    chained = make_chain(5)
    del chained[1]
    verifier = ChainVerifier()
    assert verifier.check(chained[0]) is True
    assert verifier.check(chained[1]) is False
    first = verifier.result()
    assert (first.problem, first.broken_sequence) == (ChainProblem.SEQUENCE_GAP, 2)
    # A head passed afterwards does not replace the first break found.
    assert verifier.result(head_sequence=5, head_hash=b"\x00" * 32) == first


# --- the stored head catches a truncated tail ---


@pytest.mark.parametrize("kept", [0, 3, 4])
def test_truncated_tail_is_a_sequence_gap(kept: int) -> None:
    chained = make_chain(5)
    verifier = ChainVerifier()
    for item in chained[:kept]:
        assert verifier.check(item)
    assert verifier.result().intact  # without the head, a truncated log looks intact
    result = verifier.result(head_sequence=5, head_hash=chained[-1].entry_hash)
    assert result.problem is ChainProblem.SEQUENCE_GAP
    assert result.broken_sequence == kept + 1
    assert result.broken_entry_id is None
    assert result.entries_checked == kept


def test_truncated_tail_detected_by_head_hash_alone() -> None:
    chained = make_chain(5)
    verifier = ChainVerifier()
    for item in chained[:3]:
        verifier.check(item)
    result = verifier.result(head_hash=chained[-1].entry_hash)
    assert result.problem is ChainProblem.CHAIN_BROKEN
    assert not result.intact


def test_rewritten_tail_detected_by_head_hash() -> None:
    # The whole tail re-hashed by a forger: the count matches but the stored head hash does not.
    chained = make_chain(5)
    forged_tail = chain(
        [replace(item.entry, allowed=False) for item in chained[2:]],
        last_sequence=2,
        last_hash=chained[1].entry_hash,
    )
    verifier = ChainVerifier()
    assert all(verifier.check(item) for item in chained[:2] + forged_tail)
    result = verifier.result(head_sequence=5, head_hash=chained[-1].entry_hash)
    assert result.problem is ChainProblem.CHAIN_BROKEN


def test_appended_entry_beyond_the_head() -> None:
    chained = make_chain(5)
    extra = chain([entry(6)], last_sequence=5, last_hash=chained[-1].entry_hash)
    verifier = ChainVerifier()
    assert all(verifier.check(item) for item in chained + extra)
    assert not verifier.result(head_sequence=5, head_hash=chained[-1].entry_hash).intact


# --- canonical content ---

OSLO = ZoneInfo("Europe/Oslo")


@pytest.mark.parametrize(
    "zone",
    [timezone(timedelta(hours=1)), timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)), OSLO],
    ids=["+01:00", "+02:00", "-05:30", "Europe/Oslo"],
)
@pytest.mark.parametrize(
    "instant",
    [START, datetime(2025, 7, 1, 23, 30, 0, 1, tzinfo=UTC), datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
    ids=["winter", "summer-late", "new-year"],
)
def test_canonical_content_is_stable_across_time_zones(zone: Any, instant: datetime) -> None:
    in_zone = instant.astimezone(zone)
    assert in_zone.utcoffset() != timedelta(0)
    utc_entry, zoned_entry = entry(1, decided_at=instant), entry(1, decided_at=in_zone)
    assert canonical_content(utc_entry, 1) == canonical_content(zoned_entry, 1)
    assert entry_hash(GENESIS_HASH, utc_entry, 1) == entry_hash(GENESIS_HASH, zoned_entry, 1)


def test_entry_read_back_in_another_zone_still_verifies() -> None:
    # The database returns timestamps in the session's zone; the chain must not care.
    chained = make_chain(3)
    read_back = [
        replace(item, entry=replace(item.entry, decided_at=item.entry.decided_at.astimezone(OSLO))) for item in chained
    ]
    assert verify(read_back).intact


def test_canonical_content_is_deterministic() -> None:
    assert canonical_content(entry(1), 1) == canonical_content(entry(1), 1)
    assert canonical_content(entry(1), 1) == canonical_content(replace(entry(1)), 1)


def test_canonical_content_keeps_microseconds() -> None:
    whole_second = START.replace(microsecond=0)
    assert canonical_content(entry(1, decided_at=whole_second), 1) != canonical_content(
        entry(1, decided_at=whole_second + timedelta(microseconds=1)), 1
    )
