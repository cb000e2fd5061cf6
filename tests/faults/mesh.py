"""The mesh under test: `samhandling up` on free ports in a temporary data directory, its service
processes (to kill them), its embedded PostgreSQL (to stop, start and lock it) and tokens."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import psutil

from services.platform.embedded_database import EmbeddedPostgres
from services.platform.settings import SERVICES
from tests.e2e.processes import clean_env, free_port, start, wait_serving
from tests.e2e.test_vendor_journeys import Mesh

READY_WITHIN_SECONDS = 90
STOP_WITHIN_SECONDS = 30
# What `samhandling up` is given besides its ports: a per-client rate limit (when there is one) would
# throttle the load client, which is not what these tests are about.
MESH_ENV = {"SAMHANDLING_RATE_LIMIT_PER_SECOND": "0"}
_DATABASE_CONTROL = """
import pathlib, sys
from services.platform.embedded_database import EmbeddedPostgres
database = EmbeddedPostgres(pathlib.Path(sys.argv[1]))
stopping = sys.argv[2] == "stop"
if database.is_running() != stopping:
    raise SystemExit(f"the database is {'not ' if stopping else 'already '}running in {database.pgdata}")
database.stop("fast") if stopping else database.start()
if database.is_running() == stopping:
    raise SystemExit(f"the database did not {sys.argv[2]}")
"""


class FaultMesh(Mesh):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, {name: free_port() for name in SERVICES})
        self.database = EmbeddedPostgres(data_dir)
        self.log = data_dir / "up.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["up", "--data-dir", str(self.data_dir)]
        for name, port in self.ports.items():
            args += [f"--{name}-port", str(port)]
        self.process = start(args, clean_env(**MESH_ENV), self.log)
        for name in SERVICES:
            if self.process.poll() is not None:
                raise AssertionError(f"samhandling up exited with {self.process.returncode}:\n{self.log_tail()}")
            wait_serving(self.target(name), READY_WITHIN_SECONDS)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_WITHIN_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def service_process(self, name: str) -> psutil.Process:
        """The running `samhandling serve NAME` started by the supervisor."""
        assert self.process is not None
        found = [
            child
            for child in psutil.Process(self.process.pid).children()
            if child.status() != psutil.STATUS_ZOMBIE and child.cmdline()[-2:] == ["serve", name]
        ]
        assert len(found) == 1, f"expected one {name} process, found {found}"
        return found[0]

    def kill(self, name: str) -> int:
        """SIGKILL to a service process (no drain, no goodbye); returns its pid."""
        pid = self.service_process(name).pid
        os.kill(pid, signal.SIGKILL)
        return pid

    async def database_stop(self) -> None:
        """Fast shutdown: open transactions are rolled back, every connection is closed."""
        await self._database("stop")

    async def database_start(self) -> None:
        await self._database("start")

    async def _database(self, action: str) -> None:
        # In a process of its own: as root, pg_ctl runs as another user, so Python forks (rather than
        # vforks) to start it, and a fork while gRPC's threads run in this process can crash the child.
        command = [sys.executable, "-c", _DATABASE_CONTROL, str(self.data_dir), action]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, f"database {action} failed: {done.stderr}"

    async def admin(self) -> asyncpg.Connection:
        """A superuser connection: sees every tenant's rows (row-level security does not bind it)."""
        return await asyncpg.connect(self.database.admin_url)

    def log_size(self) -> int:
        return self.log.stat().st_size

    def errors_logged(self, since: int) -> list[str]:
        """ERROR and CRITICAL lines the services logged after byte `since` of the log: unexpected errors."""
        with self.log.open("rb") as handle:
            handle.seek(since)
            lines = handle.read().decode(errors="replace").splitlines()
        found = []
        for line in lines:
            try:
                entry = json.loads(line) if line.startswith("{") else {}
            except ValueError:
                continue
            if entry.get("level") in ("ERROR", "CRITICAL"):
                found.append(f"{entry.get('service')}: {entry.get('message')} {entry.get('error', '')}".strip())
        return found

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""
