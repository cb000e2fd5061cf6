"""The server's own limit on a unary call, and the methods whose work grows with a tenant's data."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from services.platform.errors import DeadlineExceeded
from services.platform.interceptors import LONG_RUNNING_SECONDS, DeadlineInterceptor


class _NoClientDeadline:
    def time_remaining(self) -> None:
        return None


async def _takes(seconds: float):
    async def behaviour(request, context):
        await asyncio.sleep(seconds)
        return "done"

    return behaviour


def _details(method: str) -> SimpleNamespace:
    return SimpleNamespace(method=method, invocation_metadata=())


async def test_an_ordinary_call_past_the_servers_limit_is_deadline_exceeded():
    unary = DeadlineInterceptor(0.05).decorate(await _takes(0.5), False, _details("/x.v1.S/Get"))
    with pytest.raises(DeadlineExceeded, match="server's limit"):
        await unary(object(), _NoClientDeadline())


@pytest.mark.parametrize("method", sorted(LONG_RUNNING_SECONDS))
async def test_a_method_whose_work_grows_with_the_tenant_gets_its_longer_limit(method):
    unary = DeadlineInterceptor(0.05).decorate(await _takes(0.2), False, _details(method))
    assert await unary(object(), _NoClientDeadline()) == "done"
    assert LONG_RUNNING_SECONDS[method] >= 60
