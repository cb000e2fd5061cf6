"""Group commit of access decisions: batching per tenant, results to the right callers, failures and
cancellation. No database: `flush` is a fake that records its batches and can be held open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from services.access.adapters.decision_batcher import Batcher
from services.platform.errors import Unavailable

TIMEOUT = 5.0


class FakeFlush:
    """Records every batch; each call waits until released when `hold` is set, and may fail."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.hold = hold
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.running = 0
        self.max_running = 0
        # Decides, per call, whether the call fails (and with what).
        self.fail: Callable[[int, list[int]], Exception | None] = lambda index, queries: None
        self.drop_last_result = False

    async def __call__(self, tenant: str, queries: Sequence[int]) -> list[str]:
        index = len(self.batches)
        self.batches.append((tenant, list(queries)))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.entered.set()
        try:
            if self.hold:
                await self.release.wait()
            else:
                await asyncio.sleep(0)
            error = self.fail(index, list(queries))
            if error is not None:
                raise error
            results = [f"{tenant}:{query}" for query in queries]
            return results[:-1] if self.drop_last_result else results
        finally:
            self.running -= 1

    async def wait_entered(self) -> None:
        await asyncio.wait_for(self.entered.wait(), TIMEOUT)
        self.entered.clear()


async def settle() -> None:
    """Lets every ready task run until it blocks."""
    for _ in range(10):
        await asyncio.sleep(0)


def sizes(flush: FakeFlush) -> list[int]:
    return [len(queries) for _, queries in flush.batches]


async def test_single_submit() -> None:
    flush = FakeFlush()
    batcher: Batcher[int, str] = Batcher(flush)
    assert await asyncio.wait_for(batcher.submit("1804", 7), TIMEOUT) == "1804:7"
    assert flush.batches == [("1804", [7])]


async def test_concurrent_submits_are_batched() -> None:
    flush = FakeFlush()
    batcher: Batcher[int, str] = Batcher(flush)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit("1804", n) for n in range(20))), TIMEOUT)
    assert results == [f"1804:{n}" for n in range(20)]
    assert len(flush.batches) < 20
    assert sorted(query for _, queries in flush.batches for query in queries) == list(range(20))


async def test_submits_arriving_during_a_flush_wait_for_the_next_batch() -> None:
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, str] = Batcher(flush)
    first = asyncio.create_task(batcher.submit("1804", 0))
    await flush.wait_entered()
    later = [asyncio.create_task(batcher.submit("1804", n)) for n in range(1, 11)]
    await settle()
    # While the first flush runs, nothing else is flushed for this tenant and nobody has an answer.
    assert flush.batches == [("1804", [0])]
    assert not any(task.done() for task in [first, *later])

    flush.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *later), TIMEOUT)

    assert results == [f"1804:{n}" for n in range(11)]
    assert flush.batches == [("1804", [0]), ("1804", list(range(1, 11)))]
    assert len(flush.batches) < 11
    assert flush.max_running == 1


async def test_no_answer_before_the_flush_completes() -> None:
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, str] = Batcher(flush)
    task = asyncio.create_task(batcher.submit("1804", 1))
    await flush.wait_entered()
    await asyncio.sleep(0.05)
    assert not task.done()
    flush.release.set()
    assert await asyncio.wait_for(task, TIMEOUT) == "1804:1"


async def test_results_reach_the_right_callers_in_order() -> None:
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, str] = Batcher(flush)
    queries = [5, 3, 9, 1, 7, 3]
    tasks = [asyncio.create_task(batcher.submit("1804", query)) for query in queries]
    await flush.wait_entered()
    flush.release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert flush.batches == [("1804", queries)]  # in submit order
    assert [task.result() for task in tasks] == [f"1804:{query}" for query in queries]
    assert results == ["1804:5", "1804:3", "1804:9", "1804:1", "1804:7", "1804:3"]


@pytest.mark.parametrize(("max_batch", "expected_sizes"), [(1, [1] * 7), (2, [2, 2, 2, 1]), (3, [3, 3, 1]), (7, [7])])
async def test_max_batch_is_respected(max_batch: int, expected_sizes: list[int]) -> None:
    flush = FakeFlush()
    batcher: Batcher[int, str] = Batcher(flush, max_batch=max_batch)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit("1804", n) for n in range(7))), TIMEOUT)
    assert results == [f"1804:{n}" for n in range(7)]
    assert sizes(flush) == expected_sizes
    assert [query for _, queries in flush.batches for query in queries] == list(range(7))


async def test_max_batch_respected_for_a_backlog() -> None:
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, str] = Batcher(flush, max_batch=4)
    first = asyncio.create_task(batcher.submit("1804", 0))
    await flush.wait_entered()
    backlog = [asyncio.create_task(batcher.submit("1804", n)) for n in range(1, 11)]
    await settle()
    flush.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *backlog), TIMEOUT)
    assert results == [f"1804:{n}" for n in range(11)]
    assert [queries for _, queries in flush.batches] == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


async def test_tenants_are_flushed_independently() -> None:
    gates: dict[str, asyncio.Event] = {"1804": asyncio.Event(), "3201": asyncio.Event()}
    batches: list[tuple[str, list[int]]] = []

    async def flush(tenant: str, queries: Sequence[int]) -> list[str]:
        batches.append((tenant, list(queries)))
        await gates[tenant].wait()
        return [f"{tenant}:{query}" for query in queries]

    batcher: Batcher[int, str] = Batcher(flush)
    bodo = [asyncio.create_task(batcher.submit("1804", n)) for n in range(3)]
    baerum = [asyncio.create_task(batcher.submit("3201", n)) for n in range(10, 12)]
    await settle()
    # Both tenants are being flushed at once, each with only its own queries.
    assert sorted(batches) == [("1804", [0, 1, 2]), ("3201", [10, 11])]

    # Bærum completes while Bodø is still held.
    gates["3201"].set()
    assert await asyncio.wait_for(asyncio.gather(*baerum), TIMEOUT) == ["3201:10", "3201:11"]
    assert not any(task.done() for task in bodo)

    gates["1804"].set()
    assert await asyncio.wait_for(asyncio.gather(*bodo), TIMEOUT) == ["1804:0", "1804:1", "1804:2"]


async def test_unavailable_reaches_every_caller_of_the_batch_and_the_next_batch_runs() -> None:
    flush = FakeFlush(hold=True)
    down = Unavailable("the database cannot be reached")
    flush.fail = lambda index, queries: down if index == 0 else None
    batcher: Batcher[int, str] = Batcher(flush)
    failing = [asyncio.create_task(batcher.submit("1804", n)) for n in range(3)]
    await flush.wait_entered()
    following = [asyncio.create_task(batcher.submit("1804", n)) for n in range(3, 6)]
    await settle()
    flush.release.set()

    outcomes = await asyncio.wait_for(asyncio.gather(*failing, return_exceptions=True), TIMEOUT)
    assert all(outcome is down for outcome in outcomes)

    assert await asyncio.wait_for(asyncio.gather(*following), TIMEOUT) == ["1804:3", "1804:4", "1804:5"]
    # The database being down is not retried query by query.
    assert flush.batches == [("1804", [0, 1, 2]), ("1804", [3, 4, 5])]


async def test_an_error_every_query_hits_reaches_every_caller_and_the_next_batch_runs() -> None:
    flush = FakeFlush(hold=True)
    flush.fail = lambda index, queries: RuntimeError(f"failed {queries}") if queries[0] < 3 else None
    batcher: Batcher[int, str] = Batcher(flush)
    failing = [asyncio.create_task(batcher.submit("1804", n)) for n in range(3)]
    await flush.wait_entered()
    following = [asyncio.create_task(batcher.submit("1804", n)) for n in range(3, 6)]
    await settle()
    flush.release.set()

    outcomes = await asyncio.wait_for(asyncio.gather(*failing, return_exceptions=True), TIMEOUT)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert await asyncio.wait_for(asyncio.gather(*following), TIMEOUT) == ["1804:3", "1804:4", "1804:5"]
    assert [queries for _, queries in flush.batches][-1] == [3, 4, 5]


async def test_a_query_at_fault_fails_alone() -> None:
    flush = FakeFlush(hold=True)
    flush.fail = lambda index, queries: ValueError("malformed") if 13 in queries else None
    batcher: Batcher[int, str] = Batcher(flush)
    tasks = [asyncio.create_task(batcher.submit("1804", n)) for n in (11, 12, 13, 14)]
    await flush.wait_entered()
    flush.release.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
    assert outcomes[:2] == ["1804:11", "1804:12"]
    assert isinstance(outcomes[2], ValueError)
    assert outcomes[3] == "1804:14"
    # Each query was decided exactly once successfully: the failed batch, then one by one.
    assert flush.batches[0] == ("1804", [11, 12, 13, 14])
    assert sorted(queries[0] for _, queries in flush.batches[1:]) == [11, 12, 13, 14]
    assert all(len(queries) == 1 for _, queries in flush.batches[1:])


async def test_a_single_failing_query_is_not_retried() -> None:
    flush = FakeFlush()
    flush.fail = lambda index, queries: RuntimeError("boom") if index == 0 else None
    batcher: Batcher[int, str] = Batcher(flush)
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(batcher.submit("1804", 1), TIMEOUT)
    assert flush.batches == [("1804", [1])]
    # And the batcher keeps working.
    assert await asyncio.wait_for(batcher.submit("1804", 2), TIMEOUT) == "1804:2"


async def test_cancelled_caller_does_not_break_the_batch() -> None:
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, str] = Batcher(flush)
    tasks = [asyncio.create_task(batcher.submit("1804", n)) for n in range(4)]
    await flush.wait_entered()
    tasks[1].cancel()
    await settle()
    assert tasks[1].cancelled()
    flush.release.set()

    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)

    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert [outcomes[0], outcomes[2], outcomes[3]] == ["1804:0", "1804:2", "1804:3"]
    # The cancelled caller's query was still decided (and logged) with its batch.
    assert flush.batches == [("1804", [0, 1, 2, 3])]


async def test_caller_cancelled_before_its_flush_is_still_decided() -> None:
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, str] = Batcher(flush)
    first = asyncio.create_task(batcher.submit("1804", 0))
    await flush.wait_entered()
    waiting = [asyncio.create_task(batcher.submit("1804", n)) for n in (1, 2, 3)]
    await settle()
    waiting[0].cancel()
    await settle()
    flush.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, waiting[1], waiting[2]), TIMEOUT) == [
        "1804:0",
        "1804:2",
        "1804:3",
    ]
    assert waiting[0].cancelled()
    assert flush.batches == [("1804", [0]), ("1804", [1, 2, 3])]


async def test_cancelled_caller_of_a_failing_batch_does_not_break_the_others() -> None:
    flush = FakeFlush(hold=True)
    down = Unavailable("down")
    flush.fail = lambda index, queries: down if index == 0 else None
    batcher: Batcher[int, str] = Batcher(flush)
    tasks = [asyncio.create_task(batcher.submit("1804", n)) for n in range(3)]
    await flush.wait_entered()
    tasks[0].cancel()
    await settle()
    flush.release.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1] is down and outcomes[2] is down
    assert await asyncio.wait_for(batcher.submit("1804", 9), TIMEOUT) == "1804:9"


async def test_caller_timeout_does_not_break_the_batch() -> None:
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, str] = Batcher(flush)
    patient = asyncio.create_task(batcher.submit("1804", 1))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batcher.submit("1804", 2), 0.01)
    flush.release.set()
    assert await asyncio.wait_for(patient, TIMEOUT) == "1804:1"
    assert flush.batches == [("1804", [1, 2])]


async def test_idle_batcher_starts_again() -> None:
    flush = FakeFlush()
    batcher: Batcher[int, str] = Batcher(flush)
    assert await asyncio.wait_for(batcher.submit("1804", 1), TIMEOUT) == "1804:1"
    await settle()
    assert await asyncio.wait_for(batcher.submit("1804", 2), TIMEOUT) == "1804:2"
    assert flush.batches == [("1804", [1]), ("1804", [2])]


async def test_close_lets_the_batches_in_flight_finish() -> None:
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, str] = Batcher(flush)
    first = asyncio.create_task(batcher.submit("1804", 1))
    await flush.wait_entered()
    queued = asyncio.create_task(batcher.submit("3201", 2))
    closing = asyncio.create_task(batcher.close())
    await settle()
    assert not closing.done()
    flush.release.set()
    await asyncio.wait_for(closing, TIMEOUT)
    assert first.done() and queued.done()
    assert (first.result(), queued.result()) == ("1804:1", "3201:2")


async def test_cancelled_drainer_answers_the_in_flight_batch_and_the_queue() -> None:
    # What cancelling the service's tasks at shutdown does: nobody may wait forever.
    flush = FakeFlush(hold=True)
    batcher: Batcher[int, str] = Batcher(flush)
    in_flight = asyncio.create_task(batcher.submit("1804", 1))
    await flush.wait_entered()
    queued = asyncio.create_task(batcher.submit("1804", 2))
    await settle()
    batcher._drainers["1804"].cancel()
    with pytest.raises(Unavailable):
        await asyncio.wait_for(queued, TIMEOUT)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(in_flight, TIMEOUT)
    # A later submit starts afresh.
    flush.release.set()
    assert await asyncio.wait_for(batcher.submit("1804", 3), TIMEOUT) == "1804:3"


async def test_flush_returning_too_few_results_gives_nobody_a_decision() -> None:
    flush = FakeFlush()
    flush.drop_last_result = True
    batcher: Batcher[int, str] = Batcher(flush)
    tasks = [asyncio.create_task(batcher.submit("1804", n)) for n in range(3)]
    try:
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
        assert all(isinstance(outcome, Exception) for outcome in outcomes)
    finally:
        for task in tasks:
            task.cancel()
    await settle()
