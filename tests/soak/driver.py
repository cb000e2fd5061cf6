"""The soak's load: `python -m tests.soak.driver SPEC.json` runs a mix of calls through the mesh with
a fixed number of closed-loop workers for `duration_s` seconds and prints its figures as one JSON
object on stdout (progress on stderr).

Built on the bench driver (`tests.bench.driver`): its workers, tally and scenario calls (score,
record, overview, authorize), plus the two the bench has no scenario for (submit a services list,
list assessments). Every call in the run counts: there is no warm-up window here, an error at any
moment is an error."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from grpc import aio
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

from services.overview.api.servicer import oslo_today
from tests.bench.driver import CALL_TIMEOUT_SECONDS, Tally, figures, grpc_calls, metadata, percentile, run_workers

# Share of each call in the mix (any weights; they need not sum to 1).
MIX = {
    "score": 0.20,
    "record": 0.20,
    "submit": 0.15,
    "get_overview": 0.20,
    "authorize": 0.15,
    "list_assessments": 0.10,
}
SERVICE_CODES = ("1", "5", "6", "15", "27")

Call = Callable[[random.Random], Awaitable[object]]


def own_calls(patients: list[tuple[str, str]], news2: aio.Channel, overview: aio.Channel) -> dict[str, Call]:
    """The calls the bench driver has no scenario for."""
    news2_stub = news2_pb2_grpc.News2ServiceStub(news2)
    overview_stub = overview_pb2_grpc.OverviewServiceStub(overview)

    def pick(rng: random.Random) -> tuple[str, tuple[tuple[str, str], ...]]:
        patient, token = patients[rng.randrange(len(patients))]
        return patient, metadata(token)

    async def submit(rng: random.Random) -> object:
        patient, auth = pick(rng)
        today = oslo_today()
        services = [
            overview_pb2.MunicipalService(
                service_type_code=code,
                start_date=(today - timedelta(days=rng.randint(0, 300))).isoformat(),
                weekly_extent=f"{rng.randint(1, 20)} timer",
                responsible_unit=overview_pb2.Unit(name="Hjemmesykepleien sone sør", phone="75555000"),
            )
            for code in rng.sample(SERVICE_CODES, rng.randint(1, 3))
        ]
        request = overview_pb2.SubmitServicesRequest(
            patient_id=patient, services=services, idempotency_key=f"soak-{uuid.uuid4()}"
        )
        return await overview_stub.SubmitServices(request, metadata=auth, timeout=CALL_TIMEOUT_SECONDS)

    async def list_assessments(rng: random.Random) -> object:
        patient, auth = pick(rng)
        request = news2_pb2.ListAssessmentsRequest(patient_id=patient, page_size=20)
        return await news2_stub.ListAssessments(request, metadata=auth, timeout=CALL_TIMEOUT_SECONDS)

    return {"submit": submit, "list_assessments": list_assessments}


class Mix:
    """One call of the mix per invocation, chosen by weight; counts calls, errors and latencies per kind."""

    def __init__(self, calls: dict[str, Call]) -> None:
        self.calls = calls
        self.kinds = list(MIX)
        self.weights = [MIX[kind] for kind in self.kinds]
        self.latencies: dict[str, list[float]] = {kind: [] for kind in self.kinds}
        self.errors: Counter[str] = Counter()

    async def __call__(self, rng: random.Random) -> object:
        kind = rng.choices(self.kinds, self.weights)[0]
        began = time.perf_counter()
        try:
            result = await self.calls[kind](rng)
        except BaseException:
            self.errors[kind] += 1
            raise
        self.latencies[kind].append(time.perf_counter() - began)
        return result

    def per_kind(self) -> dict[str, dict[str, Any]]:
        report = {}
        for kind, latencies in self.latencies.items():
            ordered = sorted(latencies)
            report[kind] = {
                "ok": len(ordered),
                "errors": self.errors[kind],
                "p50_ms": percentile(ordered, 0.50),
                "p99_ms": percentile(ordered, 0.99),
            }
        return report


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    patients = [(patient, token) for patient, token in spec["patients"]]
    targets = spec["targets"]
    async with (
        aio.insecure_channel(targets["news2"]) as news2,
        aio.insecure_channel(targets["overview"]) as overview,
        aio.insecure_channel(targets["access"]) as access,
    ):
        for channel in (news2, overview, access):
            await asyncio.wait_for(channel.channel_ready(), 10)
        bench = {"patients": spec["patients"]}
        calls = {
            "score": grpc_calls(bench | {"kind": "score"}, news2),
            "record": grpc_calls(bench | {"kind": "record"}, news2),
            "get_overview": grpc_calls(bench | {"kind": "overview"}, overview),
            "authorize": grpc_calls(bench | {"kind": "authorize"}, access),
            **own_calls(patients, news2, overview),
        }
        mix = Mix(calls)
        tally = Tally(warmup_s=0.0, duration_s=spec["duration_s"])
        await run_workers(mix, spec["concurrency"], tally, spec["name"], spec.get("seed", 1))
    return figures(tally) | {"per_kind": mix.per_kind()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.soak.driver SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    print(json.dumps(asyncio.run(run(spec))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
