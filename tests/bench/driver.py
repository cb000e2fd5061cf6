"""The closed-loop load driver: `python -m tests.bench.driver SPEC.json` runs one scenario with a fixed
number of workers, each sending its next request as soon as the previous one answered, for a warm-up and
then a measured window, and prints the figures as one JSON object on stdout. Progress goes to stderr.

Counted are the calls that complete inside the measured window: `rps` is successful calls per second,
the percentiles are over the successful calls' latencies, and `errors` counts the failed ones (their
status codes and first messages are in `error_codes` and `error_samples`)."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from samhandling.access.v1 import access_pb2, access_pb2_grpc
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

ECHO_METHOD = "/bench.Echo/Echo"
CALL_TIMEOUT_SECONDS = 10.0
MAX_ERROR_SAMPLES = 5

Call = Callable[[random.Random], Awaitable[object]]


def vital_signs(rng: random.Random | None = None) -> news2_pb2.VitalSigns:
    """A complete set; with `rng`, values vary over the chart's bands (so scores and trends vary)."""
    if rng is None:
        return news2_pb2.VitalSigns(
            respiratory_rate=22,
            spo2=95,
            on_oxygen=False,
            systolic_bp=105,
            pulse=112,
            consciousness=news2_pb2.CONSCIOUSNESS_ALERT,
            temperature=38.4,
        )
    return news2_pb2.VitalSigns(
        respiratory_rate=rng.choice((10, 14, 18, 22, 26)),
        spo2=rng.choice((91, 93, 95, 97, 99)),
        on_oxygen=rng.random() < 0.2,
        systolic_bp=rng.choice((95, 105, 120, 140, 225)),
        pulse=rng.choice((45, 60, 80, 100, 112, 135)),
        consciousness=news2_pb2.CONSCIOUSNESS_ALERT if rng.random() < 0.95 else news2_pb2.CONSCIOUSNESS_VOICE,
        temperature=rng.choice((35.5, 36.4, 37.0, 38.4, 39.2)),
    )


def score_request() -> news2_pb2.ScoreVitalSignsRequest:
    return news2_pb2.ScoreVitalSignsRequest(vital_signs=vital_signs())


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Tally:
    warmup_s: float
    duration_s: float
    started: float = 0.0
    window_start: float = 0.0
    window_end: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    in_window_attempts: int = 0

    def begin(self) -> None:
        self.started = time.perf_counter()
        self.window_start = self.started + self.warmup_s
        self.window_end = self.window_start + self.duration_s

    def ok(self, began: float, ended: float) -> None:
        if self.window_start <= ended <= self.window_end:
            self.latencies.append(ended - began)

    def failed(self, began: float, ended: float, code: str, detail: str) -> None:
        if self.window_start <= ended <= self.window_end:
            self.errors[code] += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(f"{code}: {detail}"[:300])


async def run_workers(call: Call, concurrency: int, tally: Tally, label: str, seed: int) -> None:
    tally.begin()

    async def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.perf_counter() < tally.window_end:
            began = time.perf_counter()
            try:
                await call(rng)
            except aio.AioRpcError as error:
                tally.failed(began, time.perf_counter(), error.code().name, error.details() or "")
            except asyncpg.PostgresError as error:
                tally.failed(began, time.perf_counter(), f"PG_{error.sqlstate}", str(error))
            except (TimeoutError, OSError, asyncpg.InterfaceError) as error:
                tally.failed(began, time.perf_counter(), type(error).__name__, str(error))
            else:
                tally.ok(began, time.perf_counter())

    progress = asyncio.create_task(report_progress(tally, label))
    try:
        await asyncio.gather(*(worker(index) for index in range(concurrency)))
    finally:
        progress.cancel()
    clear_progress()


async def report_progress(tally: Tally, label: str) -> None:
    tty = sys.stderr.isatty()
    last_line = 0.0
    while True:
        await asyncio.sleep(0.5)
        now = time.perf_counter()
        if now < tally.window_start:
            line = f"  {label:<15} warming up {now - tally.started:4.1f}/{tally.warmup_s:.0f} s"
        else:
            done = min(now, tally.window_end) - tally.window_start
            ok, errors = len(tally.latencies), sum(tally.errors.values())
            rate = ok / done if done > 0 else 0.0
            line = (
                f"  {label:<15} measuring {done:5.1f}/{tally.duration_s:.0f} s  {ok:7d} ok  {errors:5d} errors"
                f"  {rate:8.1f} req/s"
            )
        if tty:
            sys.stderr.write("\r" + line.ljust(100))
            sys.stderr.flush()
        elif now - last_line >= 2.0:
            print(line, file=sys.stderr, flush=True)
            last_line = now


def clear_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 100 + "\r")
        sys.stderr.flush()


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return round(ordered[rank - 1] * 1000, 3)


def figures(tally: Tally) -> dict[str, Any]:
    ordered = sorted(tally.latencies)
    return {
        "rps": round(len(ordered) / tally.duration_s, 1),
        "p50_ms": percentile(ordered, 0.50),
        "p95_ms": percentile(ordered, 0.95),
        "p99_ms": percentile(ordered, 0.99),
        "errors": sum(tally.errors.values()),
        "ok": len(ordered),
        "error_codes": dict(tally.errors),
        "error_samples": tally.samples,
        "measured_s": tally.duration_s,
    }


# --- scenarios ------------------------------------------------------------------------------------


def grpc_calls(spec: dict[str, Any], channel: aio.Channel) -> Call:
    kind = spec["kind"]
    patients: list[tuple[str, str]] = [tuple(pair) for pair in spec.get("patients", [])]

    def pick(rng: random.Random) -> tuple[str, tuple[tuple[str, str], ...]]:
        patient, token = patients[rng.randrange(len(patients))]
        return patient, metadata(token)

    if kind == "grpc_floor":
        echo = channel.unary_unary(ECHO_METHOD)
        body = score_request().SerializeToString()

        async def call(rng: random.Random) -> object:
            _, auth = pick(rng)
            return await echo(body, metadata=auth, timeout=CALL_TIMEOUT_SECONDS)

        return call
    if kind == "score":
        news2 = news2_pb2_grpc.News2ServiceStub(channel)
        request = score_request()

        async def call(rng: random.Random) -> object:
            _, auth = pick(rng)
            return await news2.ScoreVitalSigns(request, metadata=auth, timeout=CALL_TIMEOUT_SECONDS)

        return call
    if kind == "record":
        news2 = news2_pb2_grpc.News2ServiceStub(channel)

        async def call(rng: random.Random) -> object:
            patient, auth = pick(rng)
            signs = vital_signs(rng)
            measured = Timestamp()
            measured.FromDatetime(datetime.now(UTC) - timedelta(seconds=rng.randint(5, 6 * 3600)))
            signs.measured_at.CopyFrom(measured)
            request = news2_pb2.RecordVitalSignsRequest(
                patient_id=patient, vital_signs=signs, idempotency_key=f"bench-{uuid.uuid4()}"
            )
            return await news2.RecordVitalSigns(request, metadata=auth, timeout=CALL_TIMEOUT_SECONDS)

        return call
    if kind == "overview":
        overview = overview_pb2_grpc.OverviewServiceStub(channel)

        async def call(rng: random.Random) -> object:
            patient, auth = pick(rng)
            request = overview_pb2.GetOverviewRequest(patient_id=patient)
            return await overview.GetOverview(request, metadata=auth, timeout=CALL_TIMEOUT_SECONDS)

        return call
    if kind == "count":
        overview = overview_pb2_grpc.OverviewServiceStub(channel)

        async def call(rng: random.Random) -> object:
            patient, auth = pick(rng)
            request = overview_pb2.CountActiveServicesRequest(patient_id=patient)
            return await overview.CountActiveServices(request, metadata=auth, timeout=CALL_TIMEOUT_SECONDS)

        return call
    if kind == "authorize":
        access = access_pb2_grpc.AccessServiceStub(channel)

        async def call(rng: random.Random) -> object:
            patient, auth = pick(rng)
            request = access_pb2.AuthorizeRequest(
                patient_id=patient,
                data_kind=access_pb2.DATA_KIND_SERVICES_OVERVIEW,
                action=access_pb2.ACTION_READ,
            )
            return await access.Authorize(request, metadata=auth, timeout=CALL_TIMEOUT_SECONDS)

        return call
    raise SystemExit(f"unknown scenario kind {kind!r}")


async def run_grpc(spec: dict[str, Any], tally: Tally) -> dict[str, Any]:
    async with aio.insecure_channel(spec["target"]) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        call = grpc_calls(spec, channel)
        await run_workers(call, spec["concurrency"], tally, spec["name"], spec.get("seed", 1))
    return figures(tally)


PG_FLOOR_TABLE = "bench_pg_floor"


async def run_pg_floor(spec: dict[str, Any], tally: Tally) -> dict[str, Any]:
    """One committed INSERT per row of a row shaped and sized as the record scenario's, into a scratch
    table with the same columns and indexes as `record_versions`, from `concurrency` connections."""
    row = spec["row"]
    payload = bytes.fromhex(row["payload_hex"])
    fingerprint = bytes.fromhex(row["fingerprint_hex"])
    admin = await asyncpg.connect(spec["dsn"])
    try:
        await admin.execute(f"DROP TABLE IF EXISTS {PG_FLOOR_TABLE}")
        await admin.execute(
            f"CREATE TABLE {PG_FLOOR_TABLE} (LIKE record_versions INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        pool = await asyncpg.create_pool(spec["dsn"], min_size=spec["concurrency"], max_size=spec["concurrency"])
        counter = iter(range(1, 1 << 62))
        statement = (
            f"INSERT INTO {PG_FLOOR_TABLE} (tenant, patient_id, kind, key, version, sequence, payload,"
            " content_type, source_system, organisation_number, author_hpr_number, idempotency_key,"
            " request_fingerprint) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $10, $11, $12)"
        )

        async def call(rng: random.Random) -> object:
            number = next(counter)
            key = f"{row['key'][:-32]}{uuid.uuid4().hex}"
            async with pool.acquire() as connection:
                return await connection.execute(
                    statement,
                    row["tenant"],
                    row["patient_id"],
                    row["kind"],
                    key,
                    number,
                    payload,
                    row["content_type"],
                    row["source_system"],
                    row["organisation_number"],
                    row["author_hpr_number"],
                    f"news2:bench-{uuid.uuid4()}",
                    fingerprint,
                    timeout=CALL_TIMEOUT_SECONDS,
                )

        try:
            await run_workers(call, spec["concurrency"], tally, spec["name"], spec.get("seed", 1))
        finally:
            await pool.close()
    finally:
        try:
            await admin.execute(f"DROP TABLE IF EXISTS {PG_FLOOR_TABLE}")
        finally:
            await admin.close()
    return figures(tally)


async def main_async(spec: dict[str, Any]) -> dict[str, Any]:
    tally = Tally(spec["warmup_s"], spec["duration_s"])
    if spec["kind"] == "pg_floor":
        return await run_pg_floor(spec, tally)
    return await run_grpc(spec, tally)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.bench.driver SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    result = asyncio.run(main_async(spec))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
