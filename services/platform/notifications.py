"""Wakes watchers when a tenant's feed moves, in every process of a service: writers send NOTIFY
(payload: the tenant) on commit, and each process keeps one LISTEN connection per channel that fans
out to its watchers. A watcher also re-reads on a timeout, so a lost notification only delays, never
loses, a change."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


class ChangeNotifier:
    def __init__(self, engine: AsyncEngine, channel: str, reconnect_delay: float = 1.0) -> None:
        self.engine = engine
        self.channel = channel
        self.reconnect_delay = reconnect_delay
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.closed = False

    def subscribe(self, tenant: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters[tenant].add(event)
        return event

    def unsubscribe(self, tenant: str, event: asyncio.Event) -> None:
        self._waiters[tenant].discard(event)
        if not self._waiters[tenant]:
            del self._waiters[tenant]

    def wake(self, tenant: str) -> None:
        for event in self._waiters.get(tenant, ()):
            event.set()

    async def close(self) -> None:
        """Wakes every watcher so it can see `closed` and end its stream."""
        self.closed = True
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def listen(self, _running: object = None) -> None:
        """Background job: keeps a LISTEN connection open for the life of the service."""
        while not self.closed:
            try:
                async with self.engine.connect() as connection:
                    raw = await connection.get_raw_connection()
                    driver = raw.driver_connection
                    await driver.add_listener(self.channel, self._on_notification)
                    # Wake everyone once: changes may have committed while we were not listening.
                    for tenant in list(self._waiters):
                        self.wake(tenant)
                    while not driver.is_closed() and not self.closed:
                        await asyncio.sleep(self.reconnect_delay)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.debug("change listener lost its connection: %s", type(error).__name__)
            await asyncio.sleep(self.reconnect_delay)

    def _on_notification(self, _connection: object, _pid: int, _channel: str, tenant: str) -> None:
        self.wake(tenant)
