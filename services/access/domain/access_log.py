"""The access log: one entry per decision or consent change, hash-chained per tenant so that anyone
holding the log can verify that no entry was changed, removed or inserted."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from services.access.domain.decisions import Action, DataKind

GENESIS_HASH = bytes(32)


class ConsentChange(enum.StrEnum):
    OBJECTION_REGISTERED = "OBJECTION_REGISTERED"
    OBJECTION_WITHDRAWN = "OBJECTION_WITHDRAWN"
    PRACTITIONER_BLOCKED = "PRACTITIONER_BLOCKED"
    PRACTITIONER_UNBLOCKED = "PRACTITIONER_UNBLOCKED"


@dataclass(frozen=True)
class Actor:
    hpr_number: str | None
    name: str | None
    organisation_number: str
    unit_organisation_number: str | None
    client_id: str
    is_patient: bool = False


@dataclass(frozen=True)
class LogEntry:
    """The content of an entry: everything the hash covers except the chain links themselves."""

    entry_id: str
    tenant: str
    decided_at: datetime
    patient_id: str
    actor: Actor
    purpose_of_use: str | None
    decision_ref: str | None
    data_kind: DataKind
    action: Action
    allowed: bool
    reason: str | None
    break_the_glass: bool
    follow_up: bool
    on_patients_request: bool = False
    subject_hpr_number: str | None = None


@dataclass(frozen=True)
class ChainedEntry:
    entry: LogEntry
    sequence: int
    previous_hash: bytes
    entry_hash: bytes


def canonical_content(entry: LogEntry, sequence: int) -> bytes:
    """A stable byte form of the entry: sorted keys, no whitespace, UTC microsecond timestamps."""
    content = {field.name: getattr(entry, field.name) for field in fields(entry)}
    content["actor"] = {field.name: getattr(entry.actor, field.name) for field in fields(entry.actor)}
    content["decided_at"] = entry.decided_at.astimezone(UTC).isoformat(timespec="microseconds")
    content["data_kind"] = entry.data_kind.name
    content["action"] = entry.action.name
    content["sequence"] = sequence
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(previous_hash: bytes, entry: LogEntry, sequence: int) -> bytes:
    return hashlib.sha256(previous_hash + canonical_content(entry, sequence)).digest()


def chain(entries: Iterable[LogEntry], *, last_sequence: int, last_hash: bytes) -> list[ChainedEntry]:
    """Links new entries onto a chain whose head is (last_sequence, last_hash)."""
    chained = []
    for entry in entries:
        last_sequence += 1
        digest = entry_hash(last_hash, entry, last_sequence)
        chained.append(ChainedEntry(entry, last_sequence, last_hash, digest))
        last_hash = digest
    return chained


class ChainProblem(enum.StrEnum):
    HASH_MISMATCH = "HASH_MISMATCH"
    CHAIN_BROKEN = "CHAIN_BROKEN"
    SEQUENCE_GAP = "SEQUENCE_GAP"


@dataclass(frozen=True)
class Verification:
    entries_checked: int
    head_hash: bytes
    problem: ChainProblem | None = None
    # The first entry that fails; its id is None when the entry is missing altogether.
    broken_sequence: int | None = None
    broken_entry_id: str | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


class ChainVerifier:
    """Checks a tenant's entries in sequence order, one at a time, so the whole log never sits in memory."""

    def __init__(self) -> None:
        self.checked = 0
        self.previous_hash = GENESIS_HASH
        self.failure: Verification | None = None

    def check(self, item: ChainedEntry) -> bool:
        """False once a break is found (stop feeding entries then)."""
        expected_sequence = self.checked + 1
        if item.sequence != expected_sequence:
            return self._break(ChainProblem.SEQUENCE_GAP, expected_sequence, None)
        if item.previous_hash != self.previous_hash:
            return self._break(ChainProblem.CHAIN_BROKEN, item.sequence, item.entry.entry_id)
        if entry_hash(item.previous_hash, item.entry, item.sequence) != item.entry_hash:
            return self._break(ChainProblem.HASH_MISMATCH, item.sequence, item.entry.entry_id)
        self.checked += 1
        self.previous_hash = item.entry_hash
        return True

    def result(self, *, head_sequence: int | None = None, head_hash: bytes | None = None) -> Verification:
        """The verdict. The stored chain head, when given, also catches entries removed from the end."""
        if self.failure is not None:
            return self.failure
        if head_sequence is not None and head_sequence != self.checked:
            return self._failed(ChainProblem.SEQUENCE_GAP, self.checked + 1, None)
        if head_hash is not None and head_hash != self.previous_hash:
            return self._failed(ChainProblem.CHAIN_BROKEN, self.checked, None)
        return Verification(self.checked, self.previous_hash)

    def _failed(self, problem: ChainProblem, sequence: int, entry_id: str | None) -> Verification:
        return Verification(self.checked, self.previous_hash, problem, sequence, entry_id)

    def _break(self, problem: ChainProblem, sequence: int, entry_id: str | None) -> bool:
        self.failure = self._failed(problem, sequence, entry_id)
        return False


def verify(items: Iterable[ChainedEntry]) -> Verification:
    verifier = ChainVerifier()
    for item in items:
        if not verifier.check(item):
            break
    return verifier.result()
