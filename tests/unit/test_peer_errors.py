"""A peer's failed call, turned back into the domain error our caller should see."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc import aio

from services.platform import errors, request_context
from services.platform.peer_errors import domain_error


def _failed(code: grpc.StatusCode) -> aio.AioRpcError:
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(), details="peer says no")


@pytest.fixture
def deadline():
    def _set(seconds_from_now: float | None) -> None:
        request_context.deadline.set(None if seconds_from_now is None else time.monotonic() + seconds_from_now)

    yield _set
    request_context.deadline.set(None)


def test_a_peer_timing_out_at_the_callers_own_deadline_is_deadline_exceeded(deadline):
    deadline(-0.01)
    assert isinstance(domain_error(_failed(grpc.StatusCode.DEADLINE_EXCEEDED), "access"), errors.DeadlineExceeded)


@pytest.mark.parametrize("remaining", [None, 3.0], ids=["no caller deadline", "caller has time left"])
def test_a_peer_timing_out_on_its_own_is_unavailable_and_retryable(deadline, remaining):
    deadline(remaining)
    assert isinstance(domain_error(_failed(grpc.StatusCode.DEADLINE_EXCEEDED), "access"), errors.Unavailable)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED])
def test_an_unreachable_peer_is_unavailable_even_past_the_deadline(deadline, code):
    deadline(-1)
    assert isinstance(domain_error(_failed(code), "storage"), errors.Unavailable)
