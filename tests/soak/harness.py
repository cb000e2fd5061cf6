"""`python -m tests.soak [--seconds N]`: the mesh under a steady mixed load for N seconds (default
600, or $SOAK_SECONDS), at the bench's concurrency (16). Issue 8, "Load": memory of every service
process stays flat, no file descriptor or connection leaks, error rate 0.

Phases: start the mesh (`samhandling up`, per-client rate limit off) → sample every service process
at rest ("start") → warm-up load (pools fill, caches and allocator arenas settle) → rest 3 s and
sample ("baseline") → the soak itself, sampling every few seconds → rest 3 s and sample ("end") →
stop the mesh. What is judged is baseline → end, both at rest, so that a growth is what the soak
itself left behind:

- each service's RSS may grow by at most 10 % of its baseline plus 10 MiB;
- open file descriptors by at most 4, established TCP connections by at most 2;
- no call may fail (warm-up included), no service may restart or log an ERROR.

Samples come from /proc/<pid>/ (status, fd, net/tcp, net/tcp6, net/unix); Linux only. Prints a table,
writes `soak-results.json` in the working directory, exits 1 if a bound was broken."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from services.platform.settings import SERVICES
from tests.bench import fill
from tests.bench.harness import (
    BODO_ORG,
    CONCURRENCY,
    REPO,
    SERVING_TIMEOUT,
    Mesh,
    Terminated,
    _on_sigterm,
    cpu_model,
    log_findings,
    spawn,
    tail,
    token_pairs,
    wait_serving,
)
from tests.e2e.processes import SAMHANDLING, clean_env

DEFAULT_SECONDS = 600
RESULTS_FILE = "soak-results.json"
PATIENTS = 200
REST_SECONDS = 3.0
# The mesh's environment besides ports and data directory: the per-client rate limit would throttle a
# single driver at this concurrency, which is not what a soak is about.
SOAK_ENV = {"SAMHANDLING_RATE_LIMIT_PER_SECOND": "0"}

RSS_GROWTH_FRACTION = 0.10
RSS_GROWTH_SLACK_KIB = 10 * 1024
FD_GROWTH_MAX = 4
TCP_GROWTH_MAX = 2

TCP_STATES = {"01": "established", "0A": "listen"}


@dataclass
class ProcessSample:
    rss_kib: int
    fds: int
    tcp_established: int
    tcp_listen: int
    tcp_other: int
    unix_sockets: int


@dataclass
class Config:
    seconds: float
    warmup_seconds: float
    sample_every: float
    concurrency: int
    output: Path
    keep: bool


@dataclass
class Soak:
    config: Config
    began: float = field(default_factory=time.monotonic)
    samples: dict[str, dict[str, ProcessSample]] = field(default_factory=dict)  # phase -> service -> sample
    series: list[dict[str, Any]] = field(default_factory=list)
    driver: dict[str, dict[str, Any]] = field(default_factory=dict)
    database_connections: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    findings: dict[str, Any] = field(default_factory=dict)

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.began:7.1f} s] {message}", flush=True)


class SoakMesh(Mesh):
    """The bench's mesh, started with the soak's environment; knows its service processes."""

    def start(self) -> None:
        args = ["up", "--data-dir", str(self.data_dir)]
        for name, port in self.ports.items():
            args += [f"--{name}-port", str(port)]
        self.process = spawn([*SAMHANDLING, *args], self.log, clean_env(**SOAK_ENV))
        wait_serving({name: self.target(name) for name in SERVICES}, self.process, self.log, SERVING_TIMEOUT)

    def service_pids(self) -> dict[str, int]:
        assert self.process is not None
        pids = {}
        for child in psutil.Process(self.process.pid).children():
            command = child.cmdline()
            if command[-2:-1] == ["serve"] and command[-1] in SERVICES and child.status() != psutil.STATUS_ZOMBIE:
                pids[command[-1]] = child.pid
        return pids


# --- /proc ----------------------------------------------------------------------------------------


def _socket_inodes(pid: int) -> tuple[int, set[str]]:
    """Open descriptors, and the inodes of those that are sockets."""
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes, count = set(), 0
    for entry in os.listdir(fd_dir):
        count += 1
        try:
            target = os.readlink(fd_dir / entry)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return count, inodes


def _table(path: Path, inode_column: int, state_column: int | None) -> dict[str, str]:
    """inode -> state (or "") of every socket in one of /proc/<pid>/net/{tcp,tcp6,unix}."""
    found = {}
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        columns = line.split()
        if len(columns) > inode_column:
            found[columns[inode_column]] = columns[state_column] if state_column is not None else ""
    return found


def sample_process(pid: int) -> ProcessSample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fds, inodes = _socket_inodes(pid)
    tcp = _table(Path(f"/proc/{pid}/net/tcp"), 9, 3) | _table(Path(f"/proc/{pid}/net/tcp6"), 9, 3)
    unix = _table(Path(f"/proc/{pid}/net/unix"), 6, None)
    states = Counter(TCP_STATES.get(tcp[inode], "other") for inode in inodes if inode in tcp)
    return ProcessSample(
        rss_kib=rss,
        fds=fds,
        tcp_established=states["established"],
        tcp_listen=states["listen"],
        tcp_other=states["other"],
        unix_sockets=sum(1 for inode in inodes if inode in unix),
    )


def sample_all(pids: dict[str, int]) -> dict[str, ProcessSample]:
    return {name: sample_process(pid) for name, pid in sorted(pids.items())}


async def database_connections(mesh: SoakMesh) -> int:
    """Connections the services hold to PostgreSQL (all pools, the LISTEN connections)."""
    admin = await asyncpg.connect(mesh.database.admin_url)
    try:
        return int(
            await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'samhandling' AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await admin.close()


# --- phases ---------------------------------------------------------------------------------------


def driver_spec(soak: Soak, mesh: SoakMesh, work: Path, name: str, seconds: float, patients: list) -> Path:
    spec = {
        "name": name,
        "concurrency": soak.config.concurrency,
        "duration_s": seconds,
        "targets": {service: mesh.target(service) for service in SERVICES},
        "patients": patients,
        "seed": 1 if name == "warm-up" else 2,
    }
    path = work / f"spec-{name}.json"
    path.write_text(json.dumps(spec))
    return path


def run_phase(soak: Soak, mesh: SoakMesh, work: Path, name: str, seconds: float, patients: list) -> None:
    """One driver run; while it runs, every service process is sampled every `sample_every` seconds."""
    spec = driver_spec(soak, mesh, work, name, seconds, patients)
    log = work / f"driver-{name}.log"
    soak.say(f"{name}: {seconds:g} s of mixed calls, concurrency {soak.config.concurrency}")
    with log.open("wb") as errors:
        driver = subprocess.Popen(
            [sys.executable, "-m", "tests.soak.driver", str(spec)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
        )
        started = time.monotonic()
        pids = mesh.service_pids()
        while True:
            try:
                stdout, _ = driver.communicate(timeout=soak.config.sample_every)
                break
            except subprocess.TimeoutExpired:
                pass
            if name == "soak":
                now = sample_all(pids)
                elapsed = time.monotonic() - started
                soak.series.append({"t_s": round(elapsed, 1), **{k: asdict(v) for k, v in now.items()}})
                soak.say(
                    f"  {elapsed:6.0f} s  "
                    + "  ".join(
                        f"{k} {v.rss_kib / 1024:.0f} MiB/{v.fds} fds/{v.tcp_established} tcp" for k, v in now.items()
                    )
                )
            if time.monotonic() - started > seconds + 120:
                driver.kill()
                stdout, _ = driver.communicate()
                soak.problems.append(f"{name}: the driver did not finish in time")
                break
    if driver.returncode != 0 or not stdout.strip():
        soak.problems.append(f"{name}: the driver exited with {driver.returncode}:\n{tail(log)}")
        return
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    soak.driver[name] = result
    calls = sum(kind["ok"] + kind["errors"] for kind in result["per_kind"].values())
    errors = sum(kind["errors"] for kind in result["per_kind"].values())
    soak.say(f"{name}: {calls} calls, {errors} errors, {calls / seconds:.0f} calls/s")
    if errors:
        soak.problems.append(
            f"{name}: {errors} calls failed: {result['error_codes']}; first: {result['error_samples'][:3]}"
        )


def rest_and_sample(soak: Soak, mesh: SoakMesh, phase: str) -> None:
    time.sleep(REST_SECONDS)
    soak.samples[phase] = sample_all(mesh.service_pids())
    soak.database_connections[phase] = asyncio.run(database_connections(mesh))


def judge(soak: Soak, pids_at_start: dict[str, int], pids_at_end: dict[str, int]) -> None:
    if pids_at_end != pids_at_start:
        soak.problems.append(f"service processes changed (a restart): {pids_at_start} -> {pids_at_end}")
    baseline, end = soak.samples.get("baseline"), soak.samples.get("end")
    if not baseline or not end:
        return
    for name in sorted(baseline):
        before, after = baseline[name], end.get(name)
        if after is None:
            continue
        allowed = before.rss_kib * RSS_GROWTH_FRACTION + RSS_GROWTH_SLACK_KIB
        if after.rss_kib - before.rss_kib > allowed:
            soak.problems.append(
                f"{name}: RSS grew {(after.rss_kib - before.rss_kib) / 1024:.1f} MiB"
                f" ({before.rss_kib / 1024:.1f} -> {after.rss_kib / 1024:.1f}), more than {allowed / 1024:.1f} MiB"
            )
        if after.fds - before.fds > FD_GROWTH_MAX:
            soak.problems.append(f"{name}: open file descriptors {before.fds} -> {after.fds}")
        if after.tcp_established - before.tcp_established > TCP_GROWTH_MAX:
            soak.problems.append(f"{name}: TCP connections {before.tcp_established} -> {after.tcp_established}")


def report(soak: Soak, machine: dict[str, Any]) -> dict[str, Any]:
    print()
    header = (
        f"{'service':<10}{'RSS MiB start':>14}{'baseline':>10}{'end':>8}{'max':>8}"
        f"{'fds start':>11}{'base':>6}{'end':>6}{'tcp start':>11}{'base':>6}{'end':>6}"
    )
    print(header)
    print("-" * len(header))
    start, baseline, end = (soak.samples.get(phase, {}) for phase in ("start", "baseline", "end"))
    processes: dict[str, Any] = {}
    for name in sorted(set(start) | set(baseline) | set(end)):
        peaks = [row[name]["rss_kib"] for row in soak.series if name in row]
        rows = [phase.get(name) for phase in (start, baseline, end)]
        peak = max(peaks, default=0)
        processes[name] = {
            "start": asdict(rows[0]) if rows[0] else None,
            "baseline": asdict(rows[1]) if rows[1] else None,
            "end": asdict(rows[2]) if rows[2] else None,
            "max_rss_kib": peak,
        }

        def mib(sample: ProcessSample | None) -> str:
            return "-" if sample is None else f"{sample.rss_kib / 1024:.1f}"

        def figure(sample: ProcessSample | None, attribute: str) -> str:
            return "-" if sample is None else str(getattr(sample, attribute))

        print(
            f"{name:<10}{mib(rows[0]):>14}{mib(rows[1]):>10}{mib(rows[2]):>8}{peak / 1024:>8.1f}"
            f"{figure(rows[0], 'fds'):>11}{figure(rows[1], 'fds'):>6}{figure(rows[2], 'fds'):>6}"
            f"{figure(rows[0], 'tcp_established'):>11}{figure(rows[1], 'tcp_established'):>6}"
            f"{figure(rows[2], 'tcp_established'):>6}"
        )
    print("-" * len(header))
    print(f"database connections (start/baseline/end): {soak.database_connections}")
    main = soak.driver.get("soak")
    if main:
        calls = {kind: figures["ok"] + figures["errors"] for kind, figures in main["per_kind"].items()}
        errors = sum(figures["errors"] for figures in main["per_kind"].values())
        print(f"soak: {sum(calls.values())} calls in {soak.config.seconds:g} s ({errors} errors): {calls}")
    for message, count in soak.findings.get("log_warnings", {}).items():
        print(f"mesh log: {count} x {message}")
    bounds = (
        f"RSS growth <= {RSS_GROWTH_FRACTION:.0%} of baseline + {RSS_GROWTH_SLACK_KIB // 1024} MiB,"
        f" fds growth <= {FD_GROWTH_MAX}, TCP growth <= {TCP_GROWTH_MAX}, 0 errors, no restarts"
    )
    print(f"bounds: {bounds}")
    print("PASS" if not soak.problems else "FAIL:\n  " + "\n  ".join(soak.problems))
    document = {
        "processes": processes,
        "database_connections": soak.database_connections,
        "driver": soak.driver,
        "series": soak.series,
        "bounds": bounds,
        "problems": soak.problems,
        "findings": soak.findings,
        "machine": machine | {"duration_s": round(time.monotonic() - soak.began, 1)},
    }
    soak.config.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {soak.config.output}")
    return document


# --- main -----------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    default_seconds = float(os.environ.get("SOAK_SECONDS") or DEFAULT_SECONDS)
    parser.add_argument("--seconds", type=float, default=default_seconds, help="length of the soak (default 600)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up (default a tenth of the soak, 10 to 60)")
    parser.add_argument("--sample-every", type=float, help="seconds between samples (default 10, at least 30 samples)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="closed-loop workers (default 16)")
    parser.add_argument("--output", type=Path, default=Path(RESULTS_FILE), help="results file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return Config(
        seconds=args.seconds,
        warmup_seconds=args.warmup if args.warmup is not None else min(60.0, max(10.0, args.seconds / 10)),
        sample_every=args.sample_every or min(10.0, max(1.0, args.seconds / 30)),
        concurrency=args.concurrency,
        output=args.output.resolve(),
        keep=args.keep,
    )


def main(argv: list[str] | None = None) -> int:
    if sys.platform != "linux":
        print("the soak reads /proc: Linux only", file=sys.stderr)
        return 2
    config = parse(argv)
    soak = Soak(config)
    signal.signal(signal.SIGTERM, _on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="samhandling-soak-"))
    mesh = SoakMesh(work / "data")
    mesh.data_dir.mkdir()
    machine = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "concurrency": config.concurrency,
        "soak_s": config.seconds,
        "warmup_s": config.warmup_seconds,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    soak.say(f"soak: {config.seconds:g} s after {config.warmup_seconds:g} s of warm-up; data in {work}")
    interrupted = False
    pids_at_start: dict[str, int] = {}
    pids_at_end: dict[str, int] = {}
    try:
        mesh.start()
        pids_at_start = mesh.service_pids()
        soak.say(f"mesh SERVING: {pids_at_start}")
        soak.samples["start"] = sample_all(pids_at_start)
        soak.database_connections["start"] = asyncio.run(database_connections(mesh))
        patients = token_pairs(mesh, BODO_ORG, fill.person_numbers(PATIENTS, month_offset=65))
        run_phase(soak, mesh, work, "warm-up", config.warmup_seconds, patients)
        rest_and_sample(soak, mesh, "baseline")
        run_phase(soak, mesh, work, "soak", config.seconds, patients)
        rest_and_sample(soak, mesh, "end")
        pids_at_end = mesh.service_pids()
    except (KeyboardInterrupt, Terminated):
        interrupted = True
        soak.say("interrupted")
    except Exception as error:  # a harness failure: reported, the mesh still stopped
        soak.problems.append(f"harness: {type(error).__name__}: {error}")
        traceback.print_exc()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nothing may cut the stop short
        try:
            soak.say("stopping the mesh (SIGTERM)")
            code = mesh.stop()
            if code not in (0, None):
                soak.problems.append(f"samhandling up exited with {code}; log tail:\n{tail(mesh.log)}")
            soak.findings = log_findings(mesh.log)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if config.keep:
                soak.say(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    if interrupted:
        print(f"interrupted: {config.output.name} not written", flush=True)
        return 130
    judge(soak, pids_at_start, pids_at_end)
    if restarts := soak.findings.get("service_restarts"):
        soak.problems.append(f"services restarted: {restarts}")
    if logged := [m for m in soak.findings.get("log_warnings", {}) if " ERROR " in m or " CRITICAL " in m]:
        soak.problems.append(f"services logged errors: {logged}")
    report(soak, machine)
    return 1 if soak.problems else 0
