"""`samhandling up`: the embedded database plus one process per service on loopback, restarted with
backoff if one dies (as Kubernetes would), and stopped in order on Ctrl-C or SIGTERM: services
first (they drain), then the database. Exit code 0 on a clean stop."""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

PR_SET_PDEATHSIG = 1
RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER_SECONDS = 30.0


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies, even by SIGKILL (Linux only)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class StopSignal:
    """SIGTERM and SIGINT set a flag instead of killing us, from the moment this is installed, so a
    stop that arrives during start-up still shuts the database down."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._request)
        signal.signal(signal.SIGINT, self._request)

    def _request(self, *_: object) -> None:
        self.requested = True


@dataclass
class ServiceProcess:
    name: str
    command: list[str]
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command,
            env=dict(self.env),
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            start_new_session=True,
        )
        self.started_at = time.monotonic()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def schedule_restart(self) -> float:
        if time.monotonic() - self.started_at > STABLE_AFTER_SECONDS:
            self.restarts = 0
        delay = min(RESTART_BACKOFF_MAX, 0.5 * 2**self.restarts)
        self.restarts += 1
        self.next_start_at = time.monotonic() + delay
        self.process = None
        return delay


@dataclass
class Supervisor:
    processes: list[ServiceProcess]
    grace_seconds: float
    stop: StopSignal
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def run(self, health_targets: Mapping[str, str], ready_timeout: float = 60.0) -> int:
        for service in self.processes:
            service.start()
        pending = dict(health_targets)
        ready_deadline = time.monotonic() + ready_timeout
        while not self.stop.requested:
            self._restart_dead_services()
            if pending:
                self._report_readiness(pending, ready_deadline)
            time.sleep(0.2)
        self.stop_all()
        return 0

    def _report_readiness(self, pending: dict[str, str], deadline: float) -> None:
        """Says which services have become SERVING; removes them from `pending`."""
        for name, target in list(pending.items()):
            if health_status(target) == health_pb2.HealthCheckResponse.SERVING:
                self.log(f"  {name:<9} SERVING on {target}")
                del pending[name]
        if not pending:
            self.log("all services SERVING. Ctrl-C stops everything.")
        elif time.monotonic() > deadline:
            self.log(f"still not SERVING: {', '.join(sorted(pending))}; see the log lines above")
            pending.clear()

    def _restart_dead_services(self) -> None:
        now = time.monotonic()
        for service in self.processes:
            if service.process is None:
                if now >= service.next_start_at:
                    self.log(f"restarting {service.name}")
                    service.start()
            elif (code := service.exited()) is not None:
                delay = service.schedule_restart()
                self.log(f"{service.name} exited with code {code}; restarting in {delay:.1f}s")

    def stop_all(self) -> None:
        running = [s.process for s in self.processes if s.process is not None and s.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds + 5
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def health_status(target: str, timeout: float = 1.0) -> int | None:
    try:
        with grpc.insecure_channel(target) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            return response.status
    except grpc.RpcError:
        return None


class DataDirLock:
    """One `samhandling up` per data directory at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "up.lock"

    def __enter__(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another `samhandling up` is using {self.path.parent}") from None
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *_: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def service_command(name: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", "serve", name]
