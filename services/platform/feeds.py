"""Following a tenant's feed from a position: read what is there in batches, then wait for a wake-up
(or a poll timeout) and read again. Shared by every streaming RPC that tails a table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from services.platform.errors import Unauthenticated, Unavailable
from services.platform.notifications import ChangeNotifier
from services.platform.principal import Principal

Item = TypeVar("Item")


async def follow(
    *,
    tenant: str,
    after: int,
    read: Callable[[int, int], Awaitable[Sequence[Item]]],
    position: Callable[[Item], int],
    notifier: ChangeNotifier,
    caller: Principal,
    batch: int,
    poll_seconds: float,
) -> AsyncIterator[Item]:
    """Yields every item after `after` in order, then live ones, until the service drains (UNAVAILABLE)
    or the caller's token expires (UNAUTHENTICATED TOKEN_EXPIRED); either way the client resumes from
    the last position it received. `read(after, limit)` returns the next items in position order."""
    wakeup = notifier.subscribe(tenant)
    try:
        while True:
            wakeup.clear()  # before reading, so a commit after the read still wakes us
            items = await read(after, batch)
            for item in items:
                yield item
                after = position(item)
            if len(items) == batch:
                continue
            if notifier.closed:
                raise Unavailable("the service is shutting down; resume from the last sequence")
            if caller.expires_at is not None and time.time() > caller.expires_at:
                raise Unauthenticated(
                    "TOKEN_EXPIRED", "the access token has expired; resume from the last sequence with a new one"
                )
            try:
                await asyncio.wait_for(wakeup.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass
    finally:
        notifier.unsubscribe(tenant, wakeup)


class StreamDrain:
    """Ends relayed streams when shutdown begins, with UNAVAILABLE, so clients resume from their last
    sequence at another replica instead of waiting for the grace period to cut them off."""

    def __init__(self) -> None:
        self._draining = asyncio.Event()

    async def begin(self) -> None:
        self._draining.set()

    async def relay(self, items: AsyncGenerator[Item, None]) -> AsyncIterator[Item]:
        draining = asyncio.ensure_future(self._draining.wait())
        following: asyncio.Future[Item] | None = None
        try:
            while True:
                following = asyncio.ensure_future(anext(items))
                await asyncio.wait({following, draining}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    raise Unavailable("the service is shutting down; resume from the last sequence")
                try:
                    item = following.result()
                except StopAsyncIteration:
                    return
                following = None
                yield item
        finally:
            draining.cancel()
            if following is not None and not following.done():
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
            await items.aclose()
