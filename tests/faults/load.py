"""What runs against the mesh while a fault is injected: a load client that writes as a vendor would
(every write its own idempotency key, retried with that same key on UNAVAILABLE or DEADLINE_EXCEEDED
with bounded backoff), change-feed watchers that reconnect from the last sequence they received, and
a timeline of every service's health."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from samhandling.access.v1 import access_pb2
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc
from samhandling.storage.v1 import storage_pb2

from services.overview.api.servicer import oslo_today
from services.platform.settings import SERVICES
from tests.bench.driver import vital_signs
from tests.faults.mesh import FaultMesh

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# The test's own channels notice a restarted service within a tenth of a second, so that what is
# measured is the mesh's recovery, not the test client's reconnect backoff (1 s, 1.6 s, 2.6 s, ...).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),
]
SERVICE_NAMES = {
    "access": access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name,
    "overview": overview_pb2.DESCRIPTOR.services_by_name["OverviewService"].full_name,
    "news2": news2_pb2.DESCRIPTOR.services_by_name["News2Service"].full_name,
    "storage": storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name,
}
NURSE_HPR = "565505933"
SERVICE_CODES = ("1", "5", "6", "15", "27")


def channel(target: str) -> aio.Channel:
    return aio.insecure_channel(target, options=CHANNEL_OPTIONS)


@dataclass
class Write:
    """One logical write as the vendor sees it: sent once, retried until acknowledged or given up."""

    service: str  # "news2" (RecordVitalSigns) or "overview" (SubmitServices)
    patient: str
    idempotency_key: str
    request: Any
    first_sent: float
    attempts: int = 0
    failed_attempts: Counter[str] = field(default_factory=Counter)
    response: Any = None
    acked_at: float | None = None
    failure: str | None = None  # a status a vendor would not retry, or "gave up"

    @property
    def acked(self) -> bool:
        return self.response is not None

    @property
    def sequence(self) -> int:
        """The change-feed position of the acknowledged write."""
        return self.response.assessment.sequence if self.service == "news2" else self.response.sequence


class LoadClient:
    """A steady stream of writes: `rate` a second, alternately recording vital signs and submitting a
    services list, each in its own task whether or not earlier ones have been answered (vendors do not
    wait for each other), at most `max_in_flight` at a time (beyond that, a write is not sent and is
    counted in `held_back`). During an outage the writes in flight pile up, retrying; on recovery they
    all come back at once, as they would from many vendors."""

    def __init__(
        self,
        mesh: FaultMesh,
        source: str,
        patients: list[str],
        *,
        rate: float = 25.0,
        max_in_flight: int = 80,
        attempt_timeout: float = 3.0,
        give_up_after: float = 60.0,
        seed: int = 0,
    ) -> None:
        self.mesh = mesh
        self.source = source
        self.patients = patients
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.attempt_timeout = attempt_timeout
        self.give_up_after = give_up_after
        self.rng = random.Random(seed)
        self.auth = mesh.token(client_id=source, hpr_number=NURSE_HPR, patient_ids=tuple(patients))
        self.writes: list[Write] = []
        self.held_back = 0
        self.most_in_flight = 0
        self._sending = True
        self._producer: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._channels: list[aio.Channel] = []

    def start(self) -> None:
        news2_channel, overview_channel = channel(self.mesh.target("news2")), channel(self.mesh.target("overview"))
        self._channels = [news2_channel, overview_channel]
        methods = {
            "news2": news2_pb2_grpc.News2ServiceStub(news2_channel).RecordVitalSigns,
            "overview": overview_pb2_grpc.OverviewServiceStub(overview_channel).SubmitServices,
        }
        self._producer = asyncio.create_task(self._produce(methods))

    async def finish(self, timeout: float) -> None:
        """Stops sending new writes; waits for those in flight (with their retries) to end."""
        self._sending = False
        if self._producer is not None:
            await self._producer
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.close()
        if pending:
            raise AssertionError(f"{len(pending)} writes still retrying {timeout:.0f} s after the load stopped")
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def close(self) -> None:
        """Stops at once, without waiting for the writes in flight (after a failure)."""
        self._sending = False
        tasks = [task for task in (self._producer, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        channels, self._channels = self._channels, []
        for open_channel in channels:
            await open_channel.close()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def wait_in_flight(self, count: int, timeout: float) -> None:
        """Until at least `count` writes are in flight (or `timeout`): a fault then hits writes on their
        way, some perhaps between their commit and their answer."""
        deadline = time.monotonic() + timeout
        while len(self._in_flight) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.001)

    def acked_since(self, moment: float) -> list[Write]:
        """Acknowledged writes first sent at or after `moment`: fresh calls that went through."""
        return [w for w in self.writes if w.acked and w.first_sent >= moment]

    async def _produce(self, methods: dict[str, Callable[..., Any]]) -> None:
        services = itertools.cycle(("news2", "overview"))
        next_at = time.monotonic()
        while self._sending:
            if len(self._in_flight) < self.max_in_flight:
                service = next(services)
                write = self._new_write(service)
                self.writes.append(write)
                task = asyncio.create_task(self._send(write, methods[service]))
                self._tasks.append(task)
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
                self.most_in_flight = max(self.most_in_flight, len(self._in_flight))
            else:
                self.held_back += 1
            next_at += 1 / self.rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _send(self, write: Write, method: Callable[..., Any]) -> None:
        backoff = 0.05
        while True:
            write.attempts += 1
            try:
                response = await method(write.request, metadata=self.auth, timeout=self.attempt_timeout)
            except aio.AioRpcError as error:
                write.failed_attempts[error.code().name] += 1
                if error.code() not in RETRYABLE:
                    write.failure = f"{error.code().name}: {error.details()}"
                    return
                if time.monotonic() - write.first_sent > self.give_up_after:
                    write.failure = "gave up"
                    return
                await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.5))
                backoff = min(1.0, backoff * 2)
                continue
            write.response, write.acked_at = response, time.monotonic()
            return

    def _new_write(self, service: str) -> Write:
        patient = self.rng.choice(self.patients)
        key = f"{self.source}-{uuid.uuid4()}"
        if service == "news2":
            signs = vital_signs(self.rng)
            if self.rng.random() < 0.1:
                signs.ClearField("temperature")  # a partial set: stored as incomplete
            measured = Timestamp()
            measured.FromDatetime(datetime.now(UTC) - timedelta(seconds=self.rng.randint(60, 6 * 3600)))
            signs.measured_at.CopyFrom(measured)
            request: Any = news2_pb2.RecordVitalSignsRequest(patient_id=patient, vital_signs=signs, idempotency_key=key)
        else:
            today = oslo_today()
            services = [
                overview_pb2.MunicipalService(
                    service_type_code=code,
                    start_date=(today - timedelta(days=self.rng.randint(0, 300))).isoformat(),
                    weekly_extent=f"{self.rng.randint(1, 20)} timer",
                    responsible_unit=overview_pb2.Unit(name="Hjemmesykepleien sone sør", phone="75555000"),
                )
                for code in self.rng.sample(SERVICE_CODES, self.rng.randint(1, 3))
            ]
            request = overview_pb2.SubmitServicesRequest(patient_id=patient, services=services, idempotency_key=key)
        return Write(service, patient, key, request, time.monotonic())


class FeedWatcher:
    """Follows one change feed; whenever the stream ends (the service or the database went away) it
    reconnects from the last sequence it received, as the contract tells a client to."""

    def __init__(self, name: str, open_stream: Callable[[int], Any], after: int, position: Callable[[Any], int]):
        self.name = name
        self.open_stream = open_stream
        self.after = after
        self.position = position
        self.received: list[int] = []
        self.received_at: dict[int, float] = {}
        self.ended: Counter[str] = Counter()  # how each stream ended, by status
        self._task: asyncio.Task[None] | None = None

    @property
    def reconnects(self) -> int:
        return sum(self.ended.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_for(self, sequence: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.after < sequence:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _run(self) -> None:
        while True:
            call = self.open_stream(self.after)
            try:
                async for response in call:
                    sequence = self.position(response)
                    self.received.append(sequence)
                    self.received_at.setdefault(sequence, time.monotonic())
                    self.after = sequence
                self.ended["OK"] += 1  # a feed never ends by itself: counted, and checked
            except aio.AioRpcError as error:
                self.ended[error.code().name] += 1
            finally:
                call.cancel()
            await asyncio.sleep(0.2)


@dataclass
class Sample:
    at: float
    statuses: dict[str, int | None]  # per service, the status of its own name (readiness)

    @property
    def all_serving(self) -> bool:
        return all(status == health_pb2.HealthCheckResponse.SERVING for status in self.statuses.values())


class HealthTimeline:
    """Every service's readiness (the health status of its own service name, which follows the
    database) sampled every `interval` seconds."""

    def __init__(self, mesh: FaultMesh, interval: float = 0.2) -> None:
        self.mesh = mesh
        self.interval = interval
        self.samples: list[Sample] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def serving_again(self, since: float) -> float | None:
        """When every service was last seen becoming SERVING again after `since` (`since` itself if
        none ever stopped), or None if some service is not SERVING in the latest sample."""
        later = [sample for sample in self.samples if sample.at >= since]
        if not later or not later[-1].all_serving:
            return None
        unhealthy = [sample.at for sample in later if not sample.all_serving]
        if not unhealthy:
            return since
        return min(sample.at for sample in later if sample.at > unhealthy[-1])

    def not_serving(self, since: float) -> dict[str, float]:
        """Seconds each service was seen not SERVING after `since` (sampled)."""
        seconds: Counter[str] = Counter()
        later = [sample for sample in self.samples if sample.at >= since]
        for before, after in itertools.pairwise(later):
            for name, status in before.statuses.items():
                if status != health_pb2.HealthCheckResponse.SERVING:
                    seconds[name] += after.at - before.at
        return {name: round(value, 1) for name, value in seconds.items()}

    async def _run(self) -> None:
        channels = {name: channel(self.mesh.target(name)) for name in SERVICES}
        stubs = {name: health_pb2_grpc.HealthStub(open_channel) for name, open_channel in channels.items()}
        try:
            while True:
                began = time.monotonic()
                statuses = await asyncio.gather(*(self._check(stubs[name], name) for name in SERVICES))
                self.samples.append(Sample(began, dict(zip(SERVICES, statuses, strict=True))))
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - began)))
        finally:
            for open_channel in channels.values():
                await open_channel.close()

    @staticmethod
    async def _check(stub: health_pb2_grpc.HealthStub, name: str) -> int | None:
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAMES[name]), timeout=0.5)
        except aio.AioRpcError:
            return None
        return response.status
