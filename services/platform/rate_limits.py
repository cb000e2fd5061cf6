"""Per-client limits a service enforces after authentication: how fast one client may call (a token
bucket per client) and how many long-lived streams it may hold open. Plus the server's limits as one
value, built from the settings.

A client is the token's tenant and `client_id`: the vendor system calling, whichever clinician it
calls for. Both tables live in one server process and are touched only from its event loop, so
there are no locks. Both stay bounded: a bucket that has filled up again is the same as no bucket and
is dropped, a stream count that falls to zero is removed, and the bucket table has a hard cap."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from services.platform.settings import Settings

# Clients remembered at most; beyond it the least recently seen is forgotten (and would start again
# with a full bucket). Clients are registered systems with signed tokens: thousands, not millions.
MAX_TRACKED_CLIENTS = 10_000
# A token refilled over several clock readings may add up to 0.999…: still a token.
_ROUNDING = 1e-9


@dataclass(frozen=True)
class ServerLimits:
    """What `start_server` enforces; the defaults are the settings' defaults."""

    # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection.
    max_concurrent_streams: int = Settings.max_concurrent_streams
    # Longest handling of a unary call, whatever the caller's deadline.
    max_call_seconds: float = Settings.max_call_seconds
    # Token bucket per client; a rate of 0 turns it off.
    rate_limit_per_second: float = Settings.rate_limit_per_second
    rate_limit_burst: int = Settings.rate_limit_burst
    # Open server-streaming calls per client; 0 turns it off.
    max_streams_per_client: int = Settings.max_streams_per_client

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            max_concurrent_streams=settings.max_concurrent_streams,
            max_call_seconds=settings.max_call_seconds,
            rate_limit_per_second=settings.rate_limit_per_second,
            rate_limit_burst=settings.rate_limit_burst,
            max_streams_per_client=settings.max_streams_per_client,
        )


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """A token bucket per key: `burst` tokens at most, refilled at `rate` per second; a call takes one.

    `acquire` answers 0 when the call may go ahead, else how many seconds until it could."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("a rate limiter needs a positive rate, a burst of at least 1 and room for a key")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        # Least recently used first.
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: Hashable) -> float:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = self._refilled(bucket, now)
            bucket.updated = now
        if bucket.tokens >= 1 - _ROUNDING:
            bucket.tokens -= 1
            wait = 0.0
        else:
            wait = (1 - bucket.tokens) / self.rate
        self._evict(now)
        return wait

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        # max(0, …): a clock that stepped back never takes tokens away.
        return min(self.burst, bucket.tokens + max(0.0, now - bucket.updated) * self.rate)

    def _evict(self, now: float) -> None:
        """Drops the least recently used buckets that have filled up again (nothing is lost: a new
        bucket starts full), then, over the cap, the least recently used ones whatever their state."""
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if self._refilled(oldest, now) < self.burst - _ROUNDING:
                break
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


class StreamCounter:
    """Open streams per key, at most `limit` each. Only keys with an open stream are kept."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a stream limit must be at least 1")
        self.limit = limit
        self._open: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self._open)

    def open(self, key: Hashable) -> bool:
        """Counts a new stream for `key`, or answers False (and counts nothing) when it has `limit`."""
        count = self._open.get(key, 0)
        if count >= self.limit:
            return False
        self._open[key] = count + 1
        return True

    def close(self, key: Hashable) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def count(self, key: Hashable) -> int:
        return self._open.get(key, 0)
