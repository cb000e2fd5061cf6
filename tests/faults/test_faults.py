"""Faults injected into the running mesh under a steady stream of retried writes (issue 8):

1. the storage process is killed (SIGKILL) and `samhandling up` restarts it;
2. the access process is killed (SIGKILL) and `samhandling up` restarts it;
3. PostgreSQL is stopped (fast shutdown) and started again;
4. PostgreSQL is made slow: the hot table is locked for longer than the call deadline.

After each: every acknowledged write is stored exactly once (in the database and as a vendor lists
it), nothing is stored that was not sent, every acknowledged write has its allowed entry in the access
log and the log's hash chain verifies, feed watchers that reconnect from their last sequence got every
change exactly once, and every service is SERVING again without help. The figures of each run are
printed at the end of the session and written to `fault-figures.json` in pytest's temporary directory.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from grpc import aio
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc
from samhandling.storage.v1 import storage_pb2, storage_pb2_grpc

from services.overview.adapters.service_lists import KIND as SERVICES_KIND
from tests.faults.checks import (
    FEED_KINDS,
    Figures,
    check_access_log_chain,
    check_api,
    check_database,
    check_database_sessions,
    compare_feed,
    count_client,
    feed_position,
    feed_sequences,
    publish,
)
from tests.faults.load import FeedWatcher, HealthTimeline, LoadClient, channel
from tests.faults.mesh import FaultMesh
from tests.support import BODO, person_number

pytestmark = pytest.mark.e2e

PATIENTS = 6
WARM_UP_S = 2.0  # steady load before the fault
IN_FLIGHT_AT_FAULT = 1  # the fault waits (up to 2 s) for a write on its way
STEADY_AFTER_S = 2.0  # steady load after recovery
RECOVER_WITHIN_S = 45.0
ATTEMPT_TIMEOUT_S = 3.0  # the load client's deadline per attempt
GIVE_UP_AFTER_S = 60.0
DATABASE_DOWN_S = 3.0
# Longer than both the client's deadline and the deadline of calls between services (5 s).
LOCK_HELD_S = 6.0
FEED_CATCH_UP_S = 30.0
STREAM_ENDINGS_EXPECTED = {"UNAVAILABLE"}
# Watchers poll every 2 s when no notification wakes them: a median delay near 1 s means none do.
FEED_DELAY_P50_MAX_S = 0.5

Inject = Callable[[FaultMesh], Awaitable[float]]


async def exercise(mesh: FaultMesh, fault: str, inject: Inject, directory: Path) -> tuple[Figures, list[str]]:
    """Load, fault, recovery, more load; then every check. Returns the figures and the problems found."""
    began = time.monotonic()
    figures = Figures(fault)
    problems: list[str] = []
    patients = [person_number() for _ in range(PATIENTS)]
    client = LoadClient(
        mesh,
        f"fault-{fault}",
        patients,
        attempt_timeout=ATTEMPT_TIMEOUT_S,
        give_up_after=GIVE_UP_AFTER_S,
        seed=zlib.crc32(fault.encode()),
    )
    feed_token = mesh.token(client_id="fault-feed-follower", feed=True)
    start = await feed_position(mesh)
    log_start = mesh.log_size()

    channels = [channel(mesh.target(name)) for name in ("storage", "overview", "news2")]
    storage = storage_pb2_grpc.StorageServiceStub(channels[0])
    overview = overview_pb2_grpc.OverviewServiceStub(channels[1])
    news2 = news2_pb2_grpc.News2ServiceStub(channels[2])

    def alerts_from(after: int) -> aio.UnaryStreamCall:
        return news2.WatchAlerts(news2_pb2.WatchAlertsRequest(from_sequence=after), metadata=feed_token)

    watchers = {
        "storage Watch": FeedWatcher(
            "storage Watch",
            lambda after: storage.Watch(
                storage_pb2.WatchRequest(tenant=BODO, from_sequence=after, kinds=FEED_KINDS), metadata=client.auth
            ),
            start,
            lambda response: response.record.sequence,
        ),
        "WatchOverviews": FeedWatcher(
            "WatchOverviews",
            lambda after: overview.WatchOverviews(
                overview_pb2.WatchOverviewsRequest(from_sequence=after), metadata=feed_token
            ),
            start,
            lambda response: response.sequence,
        ),
        "WatchAlerts": FeedWatcher("WatchAlerts", alerts_from, start, lambda response: response.sequence),
    }
    timeline = HealthTimeline(mesh)
    timeline.start()
    for watcher in watchers.values():
        watcher.start()
    try:
        client.start()
        await asyncio.sleep(WARM_UP_S)
        if not client.acked_since(0):
            problems.append("no write was acknowledged before the fault")

        await client.wait_in_flight(IN_FLIGHT_AT_FAULT, timeout=2.0)
        figures.in_flight_at_fault = client.in_flight
        injected_at = time.monotonic()
        figures.fault_s = round(await inject(mesh), 2)
        recovered = await _recovered(client, timeline, injected_at)
        if recovered is None:
            problems.append(f"not recovered {RECOVER_WITHIN_S:.0f} s after the fault:\n{mesh.log_tail()}")
        await asyncio.sleep(STEADY_AFTER_S)
        await client.finish(GIVE_UP_AFTER_S + 2 * ATTEMPT_TIMEOUT_S)

        count_client(figures, client)
        serving = timeline.serving_again(injected_at)
        figures.serving_again_s = None if serving is None else round(serving - injected_at, 2)
        fresh = client.acked_since(injected_at)
        if serving is not None and fresh:
            first_ack = min(w.acked_at for w in fresh if w.acked_at is not None)
            figures.recover_s = round(max(serving, first_ack) - injected_at, 2)
        figures.not_serving_s = timeline.not_serving(injected_at)
        failures = [f"{w.service} {w.idempotency_key}: {w.failure}" for w in client.writes if w.failure]
        if failures:
            problems.append(f"{len(failures)} writes not acknowledged, e.g. {failures[:3]}")

        problems += await _check_feeds(mesh, watchers, start, alerts_from, figures)
        if recovered is not None:
            problems += _check_feed_latency(client, watchers, recovered, figures)
        problems += await check_database(mesh, client, figures)
        problems += await check_api(mesh, client, figures)
        problems += await check_access_log_chain(mesh)
        problems += await check_database_sessions(mesh)
        if errors := mesh.errors_logged(log_start):
            problems.append(f"the services logged {len(errors)} unexpected errors, e.g. {errors[:3]}")
    finally:
        await client.close()
        for watcher in watchers.values():
            await watcher.stop()
        await timeline.stop()
        for open_channel in channels:
            await open_channel.close()
        figures.duration_s = round(time.monotonic() - began, 1)
        publish(figures, directory)
    return figures, problems


async def _recovered(client: LoadClient, timeline: HealthTimeline, injected_at: float) -> float | None:
    while time.monotonic() - injected_at < RECOVER_WITHIN_S:
        if timeline.serving_again(injected_at) is not None and client.acked_since(injected_at):
            return time.monotonic()
        await asyncio.sleep(0.1)
    return None


async def _check_feeds(
    mesh: FaultMesh,
    watchers: dict[str, FeedWatcher],
    start: int,
    alerts_from: Callable[[int], aio.UnaryStreamCall],
    figures: Figures,
) -> list[str]:
    """Each watcher, reconnecting from its last sequence, got every change exactly once and in order;
    the alerts a live watcher got are exactly those a fresh replay from the same start gives."""
    problems: list[str] = []
    expected = {
        "storage Watch": await feed_sequences(mesh, start, FEED_KINDS),
        "WatchOverviews": await feed_sequences(mesh, start, [SERVICES_KIND]),
    }
    for name, sequences in expected.items():
        if sequences and not await watchers[name].wait_for(sequences[-1], FEED_CATCH_UP_S):
            problems.append(f"{name} did not catch up with sequence {sequences[-1]} within {FEED_CATCH_UP_S:.0f} s")
    live_alerts = watchers["WatchAlerts"]
    last_assessment = (await feed_sequences(mesh, start, FEED_KINDS[:1]) or [start])[-1]
    await asyncio.sleep(1.0)  # anything delivered twice, or beyond the last change, arrives now
    for watcher in watchers.values():
        await watcher.stop()

    for name, sequences in expected.items():
        counts, found = compare_feed(name, watchers[name].received, sequences)
        figures.feeds[name] = counts | {"reconnects": watchers[name].reconnects}
        problems += found
    replay = FeedWatcher("WatchAlerts replay", alerts_from, start, lambda response: response.sequence)
    replay.start()
    await replay.wait_for(max(live_alerts.received, default=start), FEED_CATCH_UP_S)
    await asyncio.sleep(1.0)
    await replay.stop()
    counts, found = compare_feed("WatchAlerts", live_alerts.received, replay.received)
    figures.feeds["WatchAlerts"] = counts | {"reconnects": live_alerts.reconnects}
    problems += found
    if live_alerts.after > last_assessment:
        problems.append(f"WatchAlerts delivered sequence {live_alerts.after}, beyond the last assessment")
    for watcher in watchers.values():
        if set(watcher.ended) - STREAM_ENDINGS_EXPECTED:
            problems.append(f"{watcher.name} streams ended with {dict(watcher.ended)}; expected only UNAVAILABLE")
    return problems


def _check_feed_latency(
    client: LoadClient, watchers: dict[str, FeedWatcher], recovered: float, figures: Figures
) -> list[str]:
    """After recovery, changes reach storage's watchers when they commit (the database's notifications
    work again), not only when a watcher's poll timer (2 s) runs out. WatchOverviews' delays are
    reported, not bounded: it compiles an overview and asks access for every change, one after the
    other, so after an outage it works through the backlog of retried writes for a while."""
    problems = []
    for name in ("storage Watch", "WatchOverviews"):
        watcher = watchers[name]
        delays = sorted(
            max(0.0, watcher.received_at[w.sequence] - w.acked_at)
            for w in client.writes
            if w.acked_at is not None and w.acked_at > recovered + 0.5 and w.sequence in watcher.received_at
        )
        if not delays:
            continue
        p50, worst = delays[len(delays) // 2], delays[-1]
        figures.feeds[name] |= {"delay_p50_s": round(p50, 3), "delay_max_s": round(worst, 3)}
        if name == "storage Watch" and p50 > FEED_DELAY_P50_MAX_S:
            problems.append(f"{name}: changes after recovery arrive {p50:.2f} s after their write (median)")
    return problems


def _assert_clean(figures: Figures, problems: list[str]) -> None:
    assert problems == [], "\n".join(problems)
    assert (figures.lost, figures.duplicated, figures.phantom, figures.unacknowledged) == (0, 0, 0, 0)
    assert figures.recover_s is not None


@pytest.fixture
def figures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp()


async def test_storage_killed(fault_mesh: FaultMesh, figures_dir, record_property):
    killed: list[int] = []

    async def kill_storage(mesh: FaultMesh) -> float:
        killed.append(mesh.kill("storage"))
        return 0.0

    figures, problems = await exercise(fault_mesh, "storage-killed", kill_storage, figures_dir)
    record_property("fault_figures", figures.line())
    _assert_clean(figures, problems)
    assert fault_mesh.service_process("storage").pid != killed[0]
    assert figures.retried > 0, "the fault was not felt: nothing was retried"


async def test_access_killed(fault_mesh: FaultMesh, figures_dir, record_property):
    killed: list[int] = []

    async def kill_access(mesh: FaultMesh) -> float:
        killed.append(mesh.kill("access"))
        return 0.0

    figures, problems = await exercise(fault_mesh, "access-killed", kill_access, figures_dir)
    record_property("fault_figures", figures.line())
    _assert_clean(figures, problems)
    assert fault_mesh.service_process("access").pid != killed[0]
    assert figures.retried > 0, "the fault was not felt: nothing was retried"


async def test_database_restarted(fault_mesh: FaultMesh, figures_dir, record_property):
    async def restart_database(mesh: FaultMesh) -> float:
        began = time.monotonic()
        await mesh.database_stop()
        await asyncio.sleep(DATABASE_DOWN_S)
        await mesh.database_start()
        return time.monotonic() - began

    figures, problems = await exercise(fault_mesh, "database-restart", restart_database, figures_dir)
    record_property("fault_figures", figures.line())
    _assert_clean(figures, problems)
    assert figures.not_serving_s.keys() >= {"storage", "access"}, "the outage was not reported by health"


async def test_database_slow(fault_mesh: FaultMesh, figures_dir, record_property):
    async def lock_hot_table(mesh: FaultMesh) -> float:
        admin = await mesh.admin()
        try:
            async with admin.transaction():
                await admin.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
                taken = time.monotonic()
                await asyncio.sleep(LOCK_HELD_S)
            return time.monotonic() - taken
        finally:
            await admin.close()

    figures, problems = await exercise(fault_mesh, "database-slow", lock_hot_table, figures_dir)
    record_property("fault_figures", figures.line())
    _assert_clean(figures, problems)
    assert figures.retried_on.get("DEADLINE_EXCEEDED", 0) > 0, "no call outlived its deadline: the lock was not felt"
