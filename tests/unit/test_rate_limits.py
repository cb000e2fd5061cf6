"""The per-client token bucket and stream counter (a hand-driven clock, no network), and how a limit
reaches the caller: RESOURCE_EXHAUSTED with ErrorInfo, RetryInfo and gRPC's retry pushback."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from services.platform import errors
from services.platform.rate_limits import RateLimiter, ServerLimits, StreamCounter
from services.platform.settings import Settings
from services.platform.status import RETRY_PUSHBACK_HEADER, status_for

ALICE, BOB = ("1804", "home-care-ehr"), ("1804", "legevakt-ehr")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_full_bucket_lets_a_burst_through_then_refuses_with_the_wait(clock: Clock):
    limiter = RateLimiter(rate=10, burst=3, clock=clock)

    assert [limiter.acquire(ALICE) for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire(ALICE) == pytest.approx(0.1)  # one token comes back every 1/10 s
    clock.advance(0.05)
    assert limiter.acquire(ALICE) == pytest.approx(0.05)
    clock.advance(0.05)
    assert limiter.acquire(ALICE) == 0
    assert limiter.acquire(ALICE) == pytest.approx(0.1)


def test_refused_calls_take_no_tokens(clock: Clock):
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    assert limiter.acquire(ALICE) == 0
    for _ in range(100):
        clock.advance(0.001)
        assert limiter.acquire(ALICE) > 0
    clock.advance(1.0)
    assert limiter.acquire(ALICE) == 0


def test_the_sustained_rate_is_the_configured_one(clock: Clock):
    limiter = RateLimiter(rate=50, burst=10, clock=clock)
    allowed = 0
    for _ in range(10_000):  # 100 s of a client trying every 10 ms (100/s)
        clock.advance(0.01)
        allowed += limiter.acquire(ALICE) == 0
    assert allowed == pytest.approx(50 * 100 + 10, abs=2)


def test_the_bucket_never_holds_more_than_the_burst(clock: Clock):
    limiter = RateLimiter(rate=100, burst=5, clock=clock)
    limiter.acquire(ALICE)
    clock.advance(3600)
    assert [limiter.acquire(ALICE) for _ in range(5)] == [0] * 5
    assert limiter.acquire(ALICE) > 0


def test_clients_have_their_own_buckets(clock: Clock):
    limiter = RateLimiter(rate=1, burst=2, clock=clock)
    assert [limiter.acquire(ALICE) for _ in range(3)] == [0, 0, 1.0]
    assert [limiter.acquire(BOB) for _ in range(2)] == [0, 0]
    assert limiter.acquire(("3201", "home-care-ehr")) == 0  # the same system for another municipality


def test_a_clock_that_steps_back_takes_nothing_away(clock: Clock):
    limiter = RateLimiter(rate=1, burst=2, clock=clock)
    limiter.acquire(ALICE)
    clock.advance(-100)
    assert limiter.acquire(ALICE) == 0
    assert limiter.acquire(ALICE) > 0


def test_idle_clients_are_forgotten(clock: Clock):
    limiter = RateLimiter(rate=10, burst=5, clock=clock)
    for client in range(100):
        limiter.acquire(("1804", f"client-{client}"))
    assert len(limiter) == 100
    clock.advance(0.5)  # five tokens at 10/s: every bucket is full again, the same as a new one
    limiter.acquire(ALICE)
    assert len(limiter) == 1


def test_a_busy_client_is_not_forgotten_while_its_bucket_is_low(clock: Clock):
    limiter = RateLimiter(rate=10, burst=5, clock=clock)
    for _ in range(6):
        limiter.acquire(ALICE)
    clock.advance(0.2)  # two tokens back, not full
    limiter.acquire(BOB)
    assert len(limiter) == 2
    assert limiter.acquire(ALICE) == 0
    assert limiter.acquire(ALICE) == 0
    assert limiter.acquire(ALICE) > 0


def test_the_table_has_a_hard_cap_dropping_the_least_recently_seen(clock: Clock):
    limiter = RateLimiter(rate=0.001, burst=1, max_keys=3, clock=clock)  # buckets stay empty for ages
    for name in ("a", "b", "c"):
        limiter.acquire(("1804", name))
    assert limiter.acquire(("1804", "a")) > 0  # "a" is now the most recently seen
    limiter.acquire(("1804", "d"))
    assert len(limiter) == 3
    assert limiter.acquire(("1804", "a")) > 0  # kept: still limited
    assert limiter.acquire(("1804", "b")) == 0  # forgotten: starts again with a full bucket


def test_memory_stays_bounded_under_a_flood_of_clients(clock: Clock):
    limiter = RateLimiter(rate=1, burst=1000, max_keys=500, clock=clock)
    for client in range(20_000):
        clock.advance(0.0001)
        limiter.acquire(("1804", f"client-{client}"))
        assert len(limiter) <= 500


@pytest.mark.parametrize(("rate", "burst"), [(0, 10), (-1, 10), (10, 0)])
def test_a_limiter_that_could_never_admit_is_refused(rate: float, burst: int):
    with pytest.raises(ValueError):
        RateLimiter(rate=rate, burst=burst)


def test_streams_are_counted_per_client_and_released():
    streams = StreamCounter(limit=2)
    assert streams.open(ALICE) and streams.open(ALICE)
    assert not streams.open(ALICE)
    assert streams.count(ALICE) == 2  # a refused stream is not counted
    assert streams.open(BOB)
    streams.close(ALICE)
    assert streams.open(ALICE)
    for _ in range(2):
        streams.close(ALICE)
    streams.close(BOB)
    assert len(streams) == 0  # nothing is kept for clients without open streams
    streams.close(BOB)  # a stray close does not go negative
    assert streams.count(BOB) == 0 and len(streams) == 0


def test_server_limits_default_to_the_settings_defaults_and_follow_the_settings():
    assert ServerLimits() == ServerLimits.from_settings(Settings())
    settings = Settings.from_env(
        {
            "SAMHANDLING_MAX_CONCURRENT_STREAMS": "7",
            "SAMHANDLING_MAX_CALL_SECONDS": "2.5",
            "SAMHANDLING_RATE_LIMIT_PER_SECOND": "0",
            "SAMHANDLING_RATE_LIMIT_BURST": "3",
            "SAMHANDLING_MAX_STREAMS_PER_CLIENT": "4",
        }
    )
    assert ServerLimits.from_settings(settings) == ServerLimits(7, 2.5, 0.0, 3, 4)


# --- how a limit reaches the caller ----------------------------------------------------------------


def _details(status: grpc.Status) -> tuple[error_details_pb2.ErrorInfo | None, error_details_pb2.RetryInfo | None]:
    rich = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    info = retry = None
    for packed in rich.details:
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
        if packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            packed.Unpack(retry)
    return info, retry


def test_a_rate_limit_is_resource_exhausted_with_reason_retry_info_and_pushback():
    error = errors.ResourceExhausted("RATE_LIMITED", "slow down", {"retry_after_ms": "250"}, retry_after_seconds=0.25)
    status = status_for(error)

    info, retry = _details(status)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info is not None and info.reason == "RATE_LIMITED"
    assert retry is not None and retry.retry_delay.ToMilliseconds() == 250
    assert dict(status.trailing_metadata)[RETRY_PUSHBACK_HEADER] == "250"


def test_a_relayed_rate_limit_keeps_its_retry_delay_from_the_error_info():
    """A peer's RESOURCE_EXHAUSTED comes back as a ResourceExhausted with only the ErrorInfo."""
    status = status_for(errors.ResourceExhausted("RATE_LIMITED", "slow down", {"retry_after_ms": "1500"}))

    _, retry = _details(status)
    assert retry is not None and retry.retry_delay.ToMilliseconds() == 1500
    assert dict(status.trailing_metadata)[RETRY_PUSHBACK_HEADER] == "1500"


def test_a_quota_without_a_delay_has_no_retry_info():
    status = status_for(errors.ResourceExhausted("QUOTA", "no more", {"retry_after_ms": "soon"}))

    info, retry = _details(status)
    assert info is not None and retry is None
    assert RETRY_PUSHBACK_HEADER not in dict(status.trailing_metadata)


def test_deadline_exceeded_has_its_own_code():
    assert status_for(errors.DeadlineExceeded("too slow")).code == grpc.StatusCode.DEADLINE_EXCEEDED
