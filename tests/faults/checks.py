"""After a fault: what the client was told against what the mesh kept — through the public API as a
vendor reads it, and in the database as the superuser sees it — and the figures of the run."""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from samhandling.access.v1 import access_pb2, access_pb2_grpc
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

from services.access.domain.decisions import Action, DataKind
from services.news2.adapters.assessments import KIND as ASSESSMENT_KIND
from services.overview.adapters.service_lists import KIND as SERVICES_KIND
from services.platform.requests import scoped_idempotency_key
from tests.faults.load import LoadClient, Write, channel
from tests.faults.mesh import FaultMesh
from tests.support import BODO

log = logging.getLogger("tests.faults")
FEED_KINDS = [ASSESSMENT_KIND, SERVICES_KIND]
SCOPE = {"news2": "news2", "overview": "overview"}
DATA_KIND = {"news2": DataKind.VITAL_SIGNS, "overview": DataKind.SERVICES_OVERVIEW}


@dataclass
class Figures:
    fault: str
    sent: int = 0
    acknowledged: int = 0
    retried: int = 0  # attempts after the first, over all writes
    writes_retried: int = 0  # writes that needed more than one attempt
    replayed: int = 0  # acknowledged as a replay: an earlier attempt was stored, its answer lost
    most_in_flight: int = 0  # writes sent and not yet answered, at most
    held_back: int = 0  # writes not sent because too many were in flight
    in_flight_at_fault: int = 0  # writes sent and not yet answered when the fault was injected
    unacknowledged: int = 0  # gave up, or ended with a status a vendor would not retry
    lost: int = 0  # acknowledged, but not stored (or not stored as acknowledged)
    duplicated: int = 0  # stored, or listed, more than once
    phantom: int = 0  # stored, but never sent
    recover_s: float | None = None  # from the fault until all SERVING and a fresh write acknowledged
    serving_again_s: float | None = None  # from the fault until every service is SERVING again
    fault_s: float = 0.0  # how long the fault itself lasted (database down, lock held)
    longest_ack_gap_s: float = 0.0  # the longest time without any acknowledgement
    not_serving_s: dict[str, float] = field(default_factory=dict)
    retried_on: dict[str, int] = field(default_factory=dict)  # failed attempts by status
    feeds: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration_s: float = 0.0

    def line(self) -> str:
        return (
            f"{self.fault:<16} sent {self.sent:>4}  acked {self.acknowledged:>4}  retried {self.retried:>4}"
            f" ({self.writes_retried} writes, {self.replayed} replayed)  lost {self.lost}"
            f"  duplicated {self.duplicated}  phantom {self.phantom}"
            f"  unacked {self.unacknowledged}  in flight at fault {self.in_flight_at_fault}"
            f"  recover {_seconds(self.recover_s)}"
            f"  (serving {_seconds(self.serving_again_s)}, fault {self.fault_s:.1f} s,"
            f" longest gap {self.longest_ack_gap_s:.1f} s)"
        )


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def count_client(figures: Figures, client: LoadClient) -> None:
    writes = client.writes
    figures.sent = len(writes)
    figures.acknowledged = sum(1 for w in writes if w.acked)
    figures.retried = sum(w.attempts - 1 for w in writes)
    figures.writes_retried = sum(1 for w in writes if w.attempts > 1)
    figures.replayed = sum(1 for w in writes if w.acked and w.response.replayed)
    figures.most_in_flight = client.most_in_flight
    figures.held_back = client.held_back
    figures.unacknowledged = sum(1 for w in writes if not w.acked)
    retried_on: Counter[str] = Counter()
    for write in writes:
        retried_on.update(write.failed_attempts)
    figures.retried_on = dict(retried_on)
    acks = sorted(w.acked_at for w in writes if w.acked_at is not None)
    figures.longest_ack_gap_s = round(max((b - a for a, b in itertools.pairwise(acks)), default=0.0), 2)


async def check_database(mesh: FaultMesh, client: LoadClient, figures: Figures) -> list[str]:
    """Every acknowledged write stored exactly once and as acknowledged; nothing stored that was not
    sent; an allowed access-log entry for every acknowledged write."""
    problems: list[str] = []
    admin = await mesh.admin()
    try:
        rows = await admin.fetch(
            "SELECT kind, patient_id, key, version, sequence, idempotency_key FROM record_versions"
            " WHERE tenant = $1 AND source_system = $2",
            BODO,
            client.source,
        )
        logged = await admin.fetch(
            "SELECT patient_id, data_kind, count(*) AS entries FROM access_log WHERE tenant = $1"
            " AND actor_client_id = $2 AND action = $3 AND allowed GROUP BY patient_id, data_kind",
            BODO,
            client.source,
            int(Action.WRITE),
        )
    finally:
        await admin.close()

    stored: dict[str, list[Any]] = {}
    for row in rows:
        stored.setdefault(row["idempotency_key"], []).append(row)
    sent = {scoped_idempotency_key(SCOPE[w.service], w.idempotency_key): w for w in client.writes}
    phantoms = [key for key in stored if key not in sent]
    figures.phantom += len(phantoms)
    if phantoms:
        problems.append(f"{len(phantoms)} stored writes were never sent, e.g. {phantoms[:3]}")
    for key, write in sent.items():
        found = stored.get(key, [])
        if len(found) > 1:
            figures.duplicated += len(found) - 1
            problems.append(f"{write.service} write {write.idempotency_key} stored {len(found)} times")
        if not write.acked:
            continue
        if not found:
            figures.lost += 1
            problems.append(f"acknowledged {write.service} write {write.idempotency_key} is not stored")
        elif (mismatch := _acknowledged_as_stored(write, found[0])) is not None:
            figures.lost += 1
            problems.append(f"acknowledged {write.service} write {write.idempotency_key}: {mismatch}")

    entries = {(row["patient_id"], row["data_kind"]): row["entries"] for row in logged}
    acked = Counter((w.patient, int(DATA_KIND[w.service])) for w in client.writes if w.acked)
    for (patient, kind), count in sorted(acked.items()):
        if entries.get((patient, kind), 0) < count:
            problems.append(
                f"access log: {entries.get((patient, kind), 0)} allowed write entries for data kind {kind} of a"
                f" patient with {count} acknowledged writes"
            )
    return problems


def _acknowledged_as_stored(write: Write, row: Any) -> str | None:
    if write.service == "news2":
        assessment = write.response.assessment
        if (assessment.assessment_id, assessment.sequence) != (row["key"], row["sequence"]):
            acknowledged = f"{assessment.assessment_id}@{assessment.sequence}"
            return f"acknowledged as {acknowledged}, stored {row['key']}@{row['sequence']}"
        return None
    if (write.response.version, write.response.sequence) != (row["version"], row["sequence"]):
        return (
            f"acknowledged as version {write.response.version}@{write.response.sequence},"
            f" stored {row['version']}@{row['sequence']}"
        )
    return None


async def check_api(mesh: FaultMesh, client: LoadClient, figures: Figures) -> list[str]:
    """What a vendor reads back: each acknowledged assessment listed exactly once, each acknowledged
    submission exactly once in the source's history, nothing listed that was never sent."""
    problems: list[str] = []
    acked = [w for w in client.writes if w.acked]
    async with channel(mesh.target("news2")) as news2_channel, channel(mesh.target("overview")) as overview_channel:
        news2 = news2_pb2_grpc.News2ServiceStub(news2_channel)
        overview = overview_pb2_grpc.OverviewServiceStub(overview_channel)
        listed: Counter[str] = Counter()
        submitted: Counter[tuple[str, int, int]] = Counter()
        for patient in client.patients:
            token = ""
            while True:
                page = await news2.ListAssessments(
                    news2_pb2.ListAssessmentsRequest(patient_id=patient, page_size=100, page_token=token),
                    metadata=client.auth,
                    timeout=10,
                )
                listed.update(a.assessment_id for a in page.assessments)
                if not (token := page.next_page_token):
                    break
            token, versions = "", []
            while True:
                history = await overview.ListSubmissions(
                    overview_pb2.ListSubmissionsRequest(patient_id=patient, page_size=100, page_token=token),
                    metadata=client.auth,
                    timeout=10,
                )
                submitted.update((patient, s.version, s.sequence) for s in history.submissions)
                versions += [s.version for s in history.submissions]
                if not (token := history.next_page_token):
                    break
            if sorted(versions) != list(range(1, len(versions) + 1)):
                problems.append(f"the source's submission history has gaps or repeats: versions {versions}")

    sent_ids = {w.response.assessment.assessment_id for w in acked if w.service == "news2"}
    for write in acked:
        if write.service == "news2":
            count = listed[write.response.assessment.assessment_id]
        else:
            count = submitted[(write.patient, write.response.version, write.response.sequence)]
        if count == 0:
            problems.append(f"acknowledged {write.service} write {write.idempotency_key} is not listed")
        elif count > 1:
            problems.append(f"acknowledged {write.service} write {write.idempotency_key} is listed {count} times")
    unacked_news2 = sum(1 for w in client.writes if w.service == "news2" and not w.acked)
    extra = [assessment_id for assessment_id in listed if assessment_id not in sent_ids]
    if len(extra) > unacked_news2:
        problems.append(f"{len(extra)} listed assessments were never acknowledged (only {unacked_news2} unacked)")
    return problems


async def check_access_log_chain(mesh: FaultMesh) -> list[str]:
    privacy_officer = mesh.token(client_id="privacy-portal", privacy_officer=True)
    async with channel(mesh.target("access")) as access_channel:
        access = access_pb2_grpc.AccessServiceStub(access_channel)
        verdict = await access.VerifyAccessLog(
            access_pb2.VerifyAccessLogRequest(), metadata=privacy_officer, timeout=30
        )
    if verdict.intact:
        return []
    return [f"the access log chain is broken at sequence {verdict.first_broken_sequence}: {verdict.problem}"]


async def check_database_sessions(mesh: FaultMesh) -> list[str]:
    """No service connection is left inside a transaction it no longer works on (a connection given
    back to its pool mid-transaction would hold its locks and poison the next call that gets it)."""
    admin = await mesh.admin()
    try:
        stuck = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'samhandling'"
            " AND state LIKE 'idle in transaction%' AND state_change < now() - interval '2 seconds'"
        )
    finally:
        await admin.close()
    return [f"{stuck} service connections idle in a transaction"] if stuck else []


async def feed_sequences(mesh: FaultMesh, after: int, kinds: list[str]) -> list[int]:
    admin = await mesh.admin()
    try:
        rows = await admin.fetch(
            "SELECT sequence FROM record_versions WHERE tenant = $1 AND sequence > $2 AND kind = ANY($3::text[])"
            " ORDER BY sequence",
            BODO,
            after,
            kinds,
        )
    finally:
        await admin.close()
    return [row["sequence"] for row in rows]


async def feed_position(mesh: FaultMesh) -> int:
    admin = await mesh.admin()
    try:
        return int(
            await admin.fetchval("SELECT coalesce(max(last_sequence), 0) FROM tenant_feeds WHERE tenant = $1", BODO)
        )
    finally:
        await admin.close()


def compare_feed(name: str, received: list[int], expected: list[int]) -> tuple[dict[str, int], list[str]]:
    counts = Counter(received)
    duplicated = sum(count - 1 for count in counts.values() if count > 1)
    missing = sorted(set(expected) - set(counts))
    unexpected = sorted(set(counts) - set(expected))
    problems = []
    if duplicated:
        problems.append(f"{name}: {duplicated} changes delivered more than once")
    if missing:
        problems.append(f"{name}: {len(missing)} changes never delivered, e.g. {missing[:5]}")
    if unexpected:
        problems.append(f"{name}: {len(unexpected)} deliveries that are not changes, e.g. {unexpected[:5]}")
    if not problems and received != expected:
        problems.append(f"{name}: delivered out of order")
    return {
        "delivered": len(received),
        "expected": len(expected),
        "duplicated": duplicated,
        "missing": len(missing),
    }, problems


def publish(figures: Figures, directory: Path) -> None:
    """Appends the figures to `fault-figures.json` in pytest's temporary directory and logs them; the
    session summary prints them all (see conftest)."""
    path = directory / "fault-figures.json"
    document = json.loads(path.read_text()) if path.exists() else {}
    document[figures.fault] = asdict(figures)
    path.write_text(json.dumps(document, indent=2) + "\n")
    RESULTS.append(figures)
    FILES.add(path)
    log.warning("fault figures: %s", figures.line())


# Every published figure of this session, for the summary printed at the end (see conftest).
RESULTS: list[Figures] = []
FILES: set[Path] = set()
