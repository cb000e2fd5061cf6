"""`python -m tests.bench [--quick]`: the mesh against its physical floor (issue 7).

Starts `samhandling up` in a temporary data directory on free ports (as the end-to-end tests do), waits
for SERVING, runs each scenario through the load driver in a process of its own, prints one table and
writes the same figures to `bench-results.json` in the working directory. The mesh is always stopped
(SIGTERM) at the end, also on an error, Ctrl-C or SIGTERM. Nothing here asserts on timings."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

from services.news2.adapters.assessments import KIND as ASSESSMENT_KIND
from services.overview.api.servicer import oslo_today
from services.platform.dev_tokens import DevTokenRequest, mint_dev_token
from services.platform.embedded_database import EmbeddedPostgres
from services.platform.settings import SERVICES, Settings
from services.platform.supervisor import health_status
from tests.bench import fill
from tests.bench.driver import vital_signs
from tests.e2e.processes import SAMHANDLING, SERVING, clean_env, free_port

REPO = Path(__file__).resolve().parents[2]
RESULTS_FILE = "bench-results.json"
CONCURRENCY = 16
BODO, BODO_ORG = "1804", "972418013"  # score, record, authorize
BAERUM, BAERUM_ORG = "3201", "935478715"  # the overview tenant, filled with bulk SQL
CLIENT = "legevakt-ehr"
NURSE_HPR = "565505933"
SMALL_FILL = 1_000
FULL_LARGE_FILL = 100_000
QUICK_LARGE_FILL = 10_000
TOKENS_PER_SCENARIO = 1_000  # patients named in tokens (one token each) per scenario
SERVING_TIMEOUT = 120.0
STOP_TIMEOUT = 45.0
PR_SET_PDEATHSIG = 1
# One client drives the whole load here: the per-client rate limit (there to stop one client from
# crowding out the others) is off, so the figures measure the mesh's capacity.
MESH_ENVIRONMENT = {"SAMHANDLING_RATE_LIMIT_PER_SECOND": "0"}

SCENARIO_ORDER = (
    "grpc_floor",
    "score",
    "authorize",
    "pg_floor",
    "record",
    "record_hops_floor",
    "overview_hops_floor",
    "overview_1k",
    "overview_100k",
    "overview_large",
    "count",
)
FIGURES = ("rps", "p50_ms", "p95_ms", "p99_ms", "errors")
# Call shapes on echo servers (see echo_servers): a record is the vendor's call to news2, which calls
# access once and storage twice; an overview is the vendor's call to overview, which calls access and
# storage once each.
HOP_SHAPES = {"record_hops_floor": [[1, 2, 2], [], []], "overview_hops_floor": [[1, 2], [], []]}


@dataclass
class Config:
    quick: bool
    warmup_s: float
    duration_s: float
    large_n: int
    patients: int
    output: Path
    keep: bool
    # Scenario names to run (for profiling one path); empty: all of them.
    only: frozenset[str] = frozenset()

    def wants(self, name: str) -> bool:
        return not self.only or name in self.only or (name == self.large_name and "overview_large" in self.only)

    @property
    def large_name(self) -> str:
        return "overview_100k" if self.large_n == FULL_LARGE_FILL else "overview_large"


@dataclass
class Run:
    config: Config
    began: float = field(default_factory=time.monotonic)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    harness_errors: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f} s] {message}", flush=True)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - started, 2)


# --- processes ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the harness dies, even by SIGKILL (Linux only)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child in a session of its own: a Ctrl-C in the terminal reaches only the harness, which then
    stops it with SIGTERM in order."""
    handle = log.open("wb")
    try:
        return subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    finally:
        handle.close()


def stop(process: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT) -> int | None:
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_serving(targets: dict[str, str], process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = dict(targets)
    while waiting:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before SERVING:\n{tail(log)}")
        for name, target in list(waiting.items()):
            if health_status(target) == SERVING:
                del waiting[name]
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"{', '.join(waiting)} not SERVING within {timeout:.0f} s:\n{tail(log)}")
        if waiting:
            time.sleep(0.2)


def tail(log: Path, size: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return ""


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_table() -> dict[int, tuple[int, float, float, str]]:
    """pid -> (parent pid, own CPU seconds, reaped children's CPU seconds, command line)."""
    table: dict[int, tuple[int, float, float, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        reaped = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
        table[int(entry.name)] = (int(fields[1]), own, reaped, command)
    return table


def _descendants(table: dict[int, tuple[int, float, float, str]], root: int) -> list[int]:
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, row in table.items() if row[0] == parent]
        found += children
        frontier += children
    return found


def log_findings(log: Path) -> dict[str, Any]:
    """What the mesh logged at WARNING or above, by service and message, and any service restarts."""
    counts: dict[str, int] = {}
    restarts: list[str] = []
    for line in tail(log, 50_000_000).splitlines():
        if "exited with code" in line or line.startswith("restarting "):
            restarts.append(line.strip())
            continue
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            key = f"{entry.get('service')} {entry['level']} {entry.get('message')} {entry.get('error', '')}".strip()
            counts[key] = counts.get(key, 0) + 1
    findings: dict[str, Any] = {}
    if counts:
        findings["log_warnings"] = dict(sorted(counts.items(), key=lambda item: -item[1])[:20])
    if restarts:
        findings["service_restarts"] = restarts[:20]
    return findings


class Mesh:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = {name: free_port() for name in SERVICES}
        self.settings = Settings(data_dir=data_dir)
        self.database = EmbeddedPostgres(data_dir)
        self.log = data_dir / "up.log"
        self.process: subprocess.Popen[bytes] | None = None

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def start(self) -> None:
        args = ["up", "--data-dir", str(self.data_dir)]
        for name, port in self.ports.items():
            args += [f"--{name}-port", str(port)]
        self.process = spawn([*SAMHANDLING, *args], self.log, clean_env(**MESH_ENVIRONMENT))
        wait_serving({name: self.target(name) for name in SERVICES}, self.process, self.log, SERVING_TIMEOUT)

    def stop(self) -> int | None:
        return stop(self.process)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each service process and by PostgreSQL (server and backends,
        live and exited). A restarted service starts again from 0 (the log says when that happened)."""
        if sys.platform != "linux" or self.process is None:
            return {}
        table = _process_table()
        seconds = dict.fromkeys(SERVICES, 0.0)
        for pid in _descendants(table, self.process.pid):
            parts = table[pid][3].split()
            if "serve" in parts and parts[-1] in seconds:
                seconds[parts[-1]] += table[pid][1] + table[pid][2]
        try:
            postmaster = int((self.database.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return seconds
        if postmaster in table:
            seconds["postgres"] = table[postmaster][1] + table[postmaster][2]
            seconds["postgres"] += sum(table[pid][1] for pid in _descendants(table, postmaster))
        return seconds

    def token(self, organisation: str, patient: str) -> str:
        request = DevTokenRequest(
            organisation_number=organisation,
            issuer=self.settings.token_issuer,
            audience=self.settings.token_audience,
            client_id=CLIENT,
            hpr_number=NURSE_HPR,
            purpose_of_use="TREAT",
            patient_ids=(patient,),
            ttl_seconds=4 * 3600,
        )
        return mint_dev_token(self.settings.dev_keys_dir, request)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: unwind, stop the mesh."""


def _on_sigterm(*_: object) -> None:
    raise Terminated()


# --- scenarios ------------------------------------------------------------------------------------


async def settle(mesh: Mesh, limit: float) -> None:
    """Before a scenario: write dirty pages out (CHECKPOINT) and give running autovacuum workers up to
    `limit` seconds to finish, so that one scenario's writes burden the next less."""
    admin = await asyncpg.connect(mesh.database.admin_url)
    try:
        await admin.execute("CHECKPOINT")
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
        ):
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting for I/O) since boot."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def cpu_snapshot(mesh: Mesh, extra: dict[str, int]) -> dict[str, float]:
    seconds = mesh.cpu_seconds()
    seconds["machine"] = machine_busy_seconds()
    if extra:
        table = _process_table()
        seconds |= {name: table[pid][1] for name, pid in extra.items() if pid in table}
    return seconds


def run_driver(
    run: Run, name: str, spec: dict[str, Any], work: Path, mesh: Mesh, extra: dict[str, int] | None = None
) -> None:
    """Runs one scenario in a driver process; records its figures and which processes kept the cores
    busy meanwhile (CPU seconds per wall second over warm-up and measurement)."""
    config = run.config
    if not config.wants(name):
        return
    spec = {
        "name": name,
        "concurrency": CONCURRENCY,
        "warmup_s": config.warmup_s,
        "duration_s": config.duration_s,
        **spec,
    }
    spec_path = work / f"spec-{name}.json"
    spec_path.write_text(json.dumps(spec))
    with run.phase(f"settle_{name}"):
        asyncio.run(settle(mesh, 3.0 if config.quick else 10.0))
    run.say(f"{name}: {config.warmup_s:g} s warm-up + {config.duration_s:g} s measured, concurrency {CONCURRENCY}")
    before = cpu_snapshot(mesh, extra or {})
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with run.phase(name):
        try:
            done = subprocess.run(
                [sys.executable, "-m", "tests.bench.driver", str(spec_path)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
                timeout=config.warmup_s + config.duration_s + 120,
                check=False,
            )
        except subprocess.TimeoutExpired:
            run.harness_errors.append(f"{name}: the driver did not finish in time")
            return
    wall = time.monotonic() - started
    after = cpu_snapshot(mesh, extra or {})
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    driver = children_after.ru_utime + children_after.ru_stime - children_before.ru_utime - children_before.ru_stime
    busy = {"driver": driver}
    busy |= {group: after[group] - before.get(group, 0.0) for group in after}
    # Everything else on the machine meanwhile (the harness, other users): noise in the figures.
    busy["other"] = max(0.0, busy.pop("machine") - sum(busy.values()))
    run.cpu[name] = {group: round(seconds / wall, 2) for group, seconds in busy.items()}
    if done.returncode != 0 or not done.stdout.strip():
        run.harness_errors.append(f"{name}: the driver exited with {done.returncode}")
        return
    result = json.loads(done.stdout.strip().splitlines()[-1])
    run.results[name] = result
    line = f"{name}: {result['rps']:.1f} req/s, p50 {fmt(result['p50_ms'])} ms, p99 {fmt(result['p99_ms'])} ms"
    if result["errors"]:
        line += f", {result['errors']} errors {result['error_codes']}"
    run.say(line)
    run.say("  cores busy: " + ", ".join(f"{group} {share:.2f}" for group, share in run.cpu[name].items() if share))


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


async def probe_record(mesh: Mesh, patient: str, token: str) -> dict[str, Any]:
    """One RecordVitalSigns through the mesh; its stored row is the model of the pg_floor row."""
    signs = vital_signs()
    measured = Timestamp()
    measured.FromDatetime(datetime.now(UTC) - timedelta(minutes=5))
    signs.measured_at.CopyFrom(measured)
    async with aio.insecure_channel(mesh.target("news2")) as channel:
        news2 = news2_pb2_grpc.News2ServiceStub(channel)
        await news2.RecordVitalSigns(
            news2_pb2.RecordVitalSignsRequest(patient_id=patient, vital_signs=signs, idempotency_key="bench-probe"),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=30,
        )
    admin = await asyncpg.connect(mesh.database.admin_url)
    try:
        row = await admin.fetchrow(
            "SELECT tenant, patient_id, kind, key, payload, content_type, source_system, organisation_number,"
            " author_hpr_number, request_fingerprint FROM record_versions WHERE tenant = $1 AND kind = $2"
            " ORDER BY sequence LIMIT 1",
            BODO,
            ASSESSMENT_KIND,
        )
    finally:
        await admin.close()
    return {
        "tenant": row["tenant"],
        "patient_id": row["patient_id"],
        "kind": row["kind"],
        "key": row["key"],
        "payload_hex": bytes(row["payload"]).hex(),
        "content_type": row["content_type"],
        "source_system": row["source_system"],
        "organisation_number": row["organisation_number"],
        "author_hpr_number": row["author_hpr_number"],
        "fingerprint_hex": bytes(row["request_fingerprint"]).hex(),
    }


async def probe_overview(mesh: Mesh, patient: str, token: str) -> tuple[int, int]:
    """A filled patient's overview and active count read through the mesh: the fill is readable."""
    auth = (("authorization", f"Bearer {token}"),)
    async with aio.insecure_channel(mesh.target("overview")) as channel:
        overview = overview_pb2_grpc.OverviewServiceStub(channel)
        compiled = await overview.GetOverview(overview_pb2.GetOverviewRequest(patient_id=patient), metadata=auth)
        count = await overview.CountActiveServices(
            overview_pb2.CountActiveServicesRequest(patient_id=patient), metadata=auth
        )
    sources = {source.source_system for entry in compiled.entries for source in entry.sources}
    if not compiled.entries or sources != set(fill.SOURCES):
        raise RuntimeError(f"the filled overview of {patient} reads back wrong: {compiled}")
    return len(compiled.entries), count.active_count


async def fill_overview(run: Run, mesh: Mesh, patients: list[str], first: int, today) -> None:
    target = fill.FillTarget(BAERUM, BAERUM_ORG)
    total = len(patients)

    def progress(done: int) -> None:
        run.say(f"  filled {first + done:,} patients ({(first + done) * len(fill.SOURCES):,} lists)")

    admin = await asyncpg.connect(mesh.database.admin_url, command_timeout=1800)
    try:
        await fill.fill(admin, target, patients, first, today, progress if total > fill.FILL_BATCH else None)
        await fill.check_fill(admin, target, patients[-1])
    finally:
        await admin.close()


POSTGRES_SETTINGS = ("fsync", "synchronous_commit", "wal_sync_method", "shared_buffers", "max_connections")


async def server_version(mesh: Mesh) -> tuple[str, dict[str, str]]:
    """PostgreSQL's version and the settings that bound a durable write."""
    admin = await asyncpg.connect(mesh.database.admin_url)
    try:
        settings = {name: await admin.fetchval(f"SHOW {name}") for name in POSTGRES_SETTINGS}
        return await admin.fetchval("SELECT version()"), settings
    finally:
        await admin.close()


def token_pairs(mesh: Mesh, organisation: str, patients: list[str]) -> list[list[str]]:
    return [[patient, mesh.token(organisation, patient)] for patient in patients]


@dataclass
class EchoServer:
    target: str
    process: subprocess.Popen[bytes]


@contextmanager
def echo_servers(work: Path, shape: list[list[int]]) -> Iterator[list[EchoServer]]:
    """Echo servers, each in its own process; server i forwards each call to the servers listed in
    shape[i], in turn (indexes of later servers)."""
    ports = [free_port() for _ in shape]
    servers: list[EchoServer] = []
    try:
        for index in reversed(range(len(shape))):
            log = work / f"echo{index}.log"
            forward = [arg for peer in shape[index] for arg in ("--forward", f"127.0.0.1:{ports[peer]}")]
            command = [sys.executable, "-m", "tests.bench.echo_server", "--port", str(ports[index]), *forward]
            server = EchoServer(f"127.0.0.1:{ports[index]}", spawn(command, log))
            servers.insert(0, server)
            wait_serving({f"echo{index}": server.target}, server.process, log, 30)
        yield servers
    finally:
        for server in servers:
            stop(server.process, 10)


def benchmark(run: Run, mesh: Mesh, work: Path, machine: dict[str, Any]) -> None:
    config = run.config
    machine["postgres"], machine["postgres_settings"] = asyncio.run(server_version(mesh))

    with run.phase("tokens"):
        bodo_patients = fill.person_numbers(config.patients, month_offset=65)
        bodo = token_pairs(mesh, BODO_ORG, bodo_patients)
    run.say(f"minted {len(bodo):,} tokens (one per patient, Bodø)")

    # The floor of any unary RPC: the same driver against a trivial echo server, in its own process.
    with echo_servers(work, [[]]) as (echo,):
        floor = {"kind": "grpc_floor", "target": echo.target, "patients": bodo}
        run_driver(run, "grpc_floor", floor, work, mesh, {"echo": echo.process.pid})

    run_driver(run, "score", {"kind": "score", "target": mesh.target("news2"), "patients": bodo}, work, mesh)
    run_driver(run, "authorize", {"kind": "authorize", "target": mesh.target("access"), "patients": bodo}, work, mesh)

    row = asyncio.run(probe_record(mesh, bodo[0][0], bodo[0][1]))
    run.say(f"record probe stored {len(row['payload_hex']) // 2} payload bytes: the pg_floor row is the same")
    run_driver(run, "pg_floor", {"kind": "pg_floor", "dsn": mesh.database.admin_url, "row": row}, work, mesh)
    run_driver(run, "record", {"kind": "record", "target": mesh.target("news2"), "patients": bodo}, work, mesh)
    # The call shapes of the mesh on echo servers: what the hops alone cost, with no work in them.
    for name, shape in HOP_SHAPES.items():
        if config.wants(name):
            with echo_servers(work, shape) as servers:
                floor = {"kind": "grpc_floor", "target": servers[0].target, "patients": bodo}
                pids = {f"echo{index}": server.process.pid for index, server in enumerate(servers)}
                run_driver(run, name, floor, work, mesh, pids)

    today = oslo_today()
    all_patients = fill.person_numbers(max(config.large_n, SMALL_FILL))
    run.say(f"filling the overview tenant ({BAERUM}) with {SMALL_FILL:,} patients x 3 sources x 3 services")
    with run.phase("fill_1k"):
        asyncio.run(fill_overview(run, mesh, all_patients[:SMALL_FILL], 0, today))
    small = token_pairs(mesh, BAERUM_ORG, list(fill.spread(all_patients[:SMALL_FILL], config.patients)))
    entries, active = asyncio.run(probe_overview(mesh, small[0][0], small[0][1]))
    run.say(f"overview probe: {entries} entries, {active} active")
    run_driver(
        run, "overview_1k", {"kind": "overview", "target": mesh.target("overview"), "patients": small}, work, mesh
    )

    if not (config.wants(config.large_name) or config.wants("count")):
        return
    if config.large_n > SMALL_FILL:
        rest = all_patients[SMALL_FILL : config.large_n]
        run.say(f"filling {len(rest):,} more patients (bulk SQL) to N = {config.large_n:,}")
        with run.phase("fill_large"):
            asyncio.run(fill_overview(run, mesh, rest, SMALL_FILL, today))
        run.say(f"fill done in {run.phases['fill_large']:.1f} s")
    large = token_pairs(mesh, BAERUM_ORG, list(fill.spread(all_patients[: config.large_n], config.patients)))
    asyncio.run(probe_overview(mesh, large[-1][0], large[-1][1]))
    target = mesh.target("overview")
    run_driver(run, config.large_name, {"kind": "overview", "target": target, "patients": large}, work, mesh)
    run_driver(run, "count", {"kind": "count", "target": target, "patients": large}, work, mesh)


# --- report ---------------------------------------------------------------------------------------


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def report(run: Run, machine: dict[str, Any]) -> dict[str, Any]:
    config = run.config
    results = run.results

    def get(name: str, figure: str) -> float | None:
        return results.get(name, {}).get(figure)

    ratios = {
        "score_over_grpc_floor": ratio(get("score", "rps"), get("grpc_floor", "rps")),
        "record_over_pg_floor": ratio(get("record", "rps"), get("pg_floor", "rps")),
        "overview_p99_100k_over_1k": ratio(get(config.large_name, "p99_ms"), get("overview_1k", "p99_ms")),
        # Not targets: how much of the bare call shape (the same hops on echo servers) is left.
        "record_over_hops_floor": ratio(get("record", "rps"), get("record_hops_floor", "rps")),
        "overview_over_hops_floor": ratio(get("overview_1k", "rps"), get("overview_hops_floor", "rps")),
    }
    names = [name for name in SCENARIO_ORDER if name in results]
    print()
    header = f"{'scenario':<20}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'errors':>8}"
    print(header)
    print("-" * len(header))
    for name in names:
        figures = results[name]
        print(
            f"{name:<20}{figures['rps']:>10.1f}{fmt(figures['p50_ms']):>10}{fmt(figures['p95_ms']):>10}"
            f"{fmt(figures['p99_ms']):>10}{figures['errors']:>8}"
        )
    print("-" * len(header))
    large_label = "100k" if config.large_name == "overview_100k" else f"{config.large_n // 1000}k (overview_large)"
    lines = {
        "score / grpc_floor (req/s)": ratios["score_over_grpc_floor"],
        "record / pg_floor (req/s)": ratios["record_over_pg_floor"],
        f"overview p99 {large_label} / p99 1k": ratios["overview_p99_100k_over_1k"],
        "record / record_hops_floor (req/s)": ratios["record_over_hops_floor"],
        "overview_1k / overview_hops_floor (req/s)": ratios["overview_over_hops_floor"],
    }
    for label, value in lines.items():
        print(f"{label:<44}{fmt(value, 3):>8}")
    for name in names:
        figures = results[name]
        if figures["errors"] or figures["error_samples"]:
            print(f"{name} errors: {figures['error_codes']}; first: {figures['error_samples'][:3]}")
    if run.harness_errors:
        print("harness errors:")
        for problem in run.harness_errors:
            print(f"  {problem}")
    print()

    errors = {
        name: {"codes": results[name]["error_codes"], "first": results[name]["error_samples"]}
        for name in names
        if results[name]["errors"] or results[name]["error_samples"]
    }
    for problem in machine.get("service_restarts", []):
        print(f"mesh: {problem}")
    for message, count in machine.get("log_warnings", {}).items():
        print(f"mesh log: {count} x {message}")
    machine["durations_s"] = {**run.phases, "total": round(time.monotonic() - run.began, 1)}
    machine["cores_busy"] = run.cpu
    if errors:
        machine["error_details"] = errors
    if run.harness_errors:
        machine["harness_errors"] = run.harness_errors
    document = {
        "scenarios": {name: {figure: results[name][figure] for figure in FIGURES} for name in names},
        "ratios": ratios,
        "machine": machine,
    }
    config.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {config.output}")
    return document


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(config: Config) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": None,
        "os": platform.platform(),
        "quick": config.quick,
        "large_fill_n": config.large_n,
        "large_scenario": config.large_name,
        "small_fill_n": SMALL_FILL,
        "concurrency": CONCURRENCY,
        "warmup_s": config.warmup_s,
        "measured_s": config.duration_s,
        "patients_per_scenario": config.patients,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if config.large_name != "overview_100k":
        info["ratio_notes"] = (
            f"overview_p99_100k_over_1k is p99(overview_large, N={config.large_n:,}) / p99(overview_1k):"
            " the large fill is smaller than 100,000 in this run"
        )
    return info


# --- main -----------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run (< 90 s) with a smaller large fill")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per scenario (default 2, quick 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per scenario (default 15, quick 4)")
    parser.add_argument("--large", type=int, help="patients in the large fill (default 100000, quick 10000)")
    parser.add_argument("--patients", type=int, default=TOKENS_PER_SCENARIO, help="patients (tokens) per scenario")
    parser.add_argument("--output", type=Path, default=Path(RESULTS_FILE), help="results file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--only", default="", help="comma-separated scenarios to run, e.g. record,overview_1k")
    args = parser.parse_args(argv)
    large = args.large or (QUICK_LARGE_FILL if args.quick else FULL_LARGE_FILL)
    return Config(
        quick=args.quick,
        warmup_s=args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0),
        duration_s=args.duration if args.duration is not None else (4.0 if args.quick else 15.0),
        large_n=max(large, SMALL_FILL),
        patients=args.patients,
        output=args.output.resolve(),
        keep=args.keep,
        only=frozenset(name for name in args.only.split(",") if name),
    )


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    run = Run(config)
    signal.signal(signal.SIGTERM, _on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="samhandling-bench-"))
    mesh = Mesh(work / "data")
    mesh.data_dir.mkdir()
    machine = machine_info(config)
    mode = "QUICK" if config.quick else "full"
    run.say(f"bench ({mode}): data in {work}; large fill N = {config.large_n:,}; {CONCURRENCY} concurrent calls")
    interrupted = False
    try:
        run.say(f"starting the mesh (samhandling up) on ports {mesh.ports}")
        with run.phase("mesh_start"):
            mesh.start()
        run.say(f"mesh SERVING after {run.phases['mesh_start']:.1f} s")
        benchmark(run, mesh, work, machine)
    except KeyboardInterrupt:
        interrupted = True
        run.say("interrupted")
    except Exception as error:  # a harness failure: reported, the mesh still stopped, partial results kept
        run.harness_errors.append(f"{type(error).__name__}: {error}")
        traceback.print_exc()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nothing may cut the stop short
        try:
            run.say("stopping the mesh (SIGTERM)")
            with run.phase("mesh_stop"):
                code = mesh.stop()
            run.say(f"mesh stopped (exit code {code})")
            if code not in (0, None):
                run.harness_errors.append(f"samhandling up exited with {code}; log tail:\n{tail(mesh.log)}")
            machine |= log_findings(mesh.log)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if config.keep:
                run.say(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    if interrupted:
        print(f"interrupted: {config.output.name} not written", flush=True)
        return 130
    report(run, machine)
    return 1 if run.harness_errors else 0
