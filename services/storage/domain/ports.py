"""What the storage API needs from the outside world; the adapters provide it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from services.storage.domain.records import PutCommand, PutResult, RecordRef, RecordVersion


class RecordStore(Protocol):
    async def put(self, command: PutCommand) -> PutResult: ...

    async def get(self, ref: RecordRef, version: int | None) -> RecordVersion: ...

    async def versions(self, ref: RecordRef, after_version: int, limit: int) -> list[RecordVersion]: ...

    async def latest(
        self, tenant: str, patient_id: str, kind: str, after_key: str, limit: int, *, descending: bool = False
    ) -> list[RecordVersion]: ...

    async def changes_after(
        self, tenant: str, sequence: int, kinds: Sequence[str], limit: int
    ) -> list[RecordVersion]: ...


class ChangeSubscriptions(Protocol):
    """Wakes watchers when a tenant's feed may have moved."""

    @property
    def closed(self) -> bool: ...

    def subscribe(self, tenant: str) -> asyncio.Event: ...

    def unsubscribe(self, tenant: str, event: asyncio.Event) -> None: ...
