"""Group commit for access decisions. Every decision is a write (its log entry) on the tenant's chain,
which only one transaction at a time may extend. Rather than queue each request for that lock, the
requests that arrive while a transaction runs are decided together in the next one: one lock, one
commit, one fsync for the whole batch. Each caller still gets its answer only after that commit.

Tracing: a batch's database work is one span, a child of its first sampled caller's span (so a lone
call's trace reaches the database) and linked to every other sampled caller's span in the batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode

from services.platform.errors import Unavailable

log = logging.getLogger(__name__)

Query = TypeVar("Query")
Result = TypeVar("Result")
Waiting = tuple[Query, "asyncio.Future[Result]", SpanContext]


class Batcher(Generic[Query, Result]):
    def __init__(
        self,
        flush: Callable[[str, Sequence[Query]], Awaitable[Sequence[Result]]],
        max_batch: int = 256,
    ) -> None:
        self.flush = flush
        self.max_batch = max_batch
        self._pending: dict[str, list[Waiting]] = {}
        self._drainers: dict[str, asyncio.Task[None]] = {}
        self._tracer = trace.get_tracer(__name__)

    async def submit(self, tenant: str, query: Query) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        # A caller that gave up never reads its future; reading the exception here keeps it quiet.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        caller = trace.get_current_span().get_span_context()
        self._pending.setdefault(tenant, []).append((query, future, caller))
        if tenant not in self._drainers:
            self._drainers[tenant] = asyncio.create_task(self._drain(tenant))
        # A caller that gives up (deadline, cancellation) stops waiting; its query is still decided
        # and logged with the rest of its batch, which is right: the attempt happened.
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Lets the batches in flight finish (used before the database goes away)."""
        await asyncio.gather(*self._drainers.values(), return_exceptions=True)

    async def _drain(self, tenant: str) -> None:
        batch: list[Waiting] = []
        try:
            while pending := self._pending.get(tenant):
                batch, self._pending[tenant] = pending[: self.max_batch], pending[self.max_batch :]
                await self._run(tenant, batch)
                batch = []
        finally:
            del self._drainers[tenant]
            # Only when cancelled (shutdown): nobody may wait forever.
            for _, future, _caller in [*batch, *self._pending.pop(tenant, [])]:
                if not future.done():
                    future.set_exception(Unavailable("the access service is shutting down; retry"))

    async def _run(self, tenant: str, batch: list[Waiting]) -> None:
        # The first sampled caller parents the batch's span (and with it the database spans); the other
        # sampled callers are linked. An unsampled first caller must not make the batch unsampled.
        callers = [caller for _, _, caller in batch if caller.is_valid and caller.trace_flags.sampled]
        parent = trace.set_span_in_context(NonRecordingSpan(callers[0])) if callers else Context()
        try:
            with self._tracer.start_as_current_span(
                "decide access batch",
                context=parent,
                links=[Link(caller) for caller in callers[1:]],
                attributes={"samhandling.batch_size": len(batch)},
                # Error messages can carry values; the span gets the error's type only.
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    results = await self.flush(tenant, [query for query, _, _ in batch])
                except Exception as error:
                    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                    raise
        except Unavailable as error:
            _fail(batch, error)
            return
        except Exception as error:
            if len(batch) == 1:
                _fail(batch, error)
                return
            # Something about one query (not the database) failed the batch: decide each on its own so
            # that only the query at fault fails.
            log.warning("a batch of %d decisions failed (%s); retrying one by one", len(batch), type(error).__name__)
            for item in batch:
                await self._run(tenant, [item])
            return
        if len(results) != len(batch):
            # Answers are matched by position: with a wrong count nobody may get one, or someone
            # would get another caller's decision.
            _fail(batch, RuntimeError(f"flush returned {len(results)} results for {len(batch)} queries"))
            return
        for (_, future, _caller), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _fail(batch: Sequence[tuple[object, asyncio.Future, SpanContext]], error: BaseException) -> None:
    for _, future, _caller in batch:
        if not future.done():
            future.set_exception(error)
