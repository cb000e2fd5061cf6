"""`samhandling up` end to end: four SERVING services on a real embedded PostgreSQL, reachable with a
dev token and standard tools, and a clean stop on SIGTERM with nothing left running."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
import pytest
from samhandling.storage.v1 import storage_pb2, storage_pb2_grpc

from services.platform.settings import SERVICES
from tests.e2e.processes import SAMHANDLING, clean_env, free_port, run, start, wait_serving
from tests.support import bearer, person_number

pytestmark = pytest.mark.e2e
READY_WITHIN_SECONDS = 60
STOPPED_WITHIN_SECONDS = 30


@pytest.fixture
def mesh(tmp_path: Path):
    ports = {name: free_port() for name in SERVICES}
    env = clean_env()
    args = ["up", "--data-dir", str(tmp_path)]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    process = start(args, env, tmp_path / "up.log")
    try:
        yield process, ports, tmp_path, env
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOPPED_WITHIN_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_up_serves_all_four_and_stops_cleanly_on_sigterm(mesh):
    process, ports, data_dir, env = mesh
    for port in ports.values():
        wait_serving(f"127.0.0.1:{port}", READY_WITHIN_SECONDS)
    descendants = psutil.Process(process.pid).children(recursive=True)
    postmaster_pid = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    assert len([p for p in descendants if "serve" in p.cmdline()]) == 4

    token = run(["dev-token", "--tenant", "1804", "--hpr", "1234567", "--data-dir", str(data_dir)], env)
    assert token.returncode == 0, token.stderr
    with grpc.insecure_channel(f"127.0.0.1:{ports['storage']}") as channel:
        stored = storage_pb2_grpc.StorageServiceStub(channel).PutRecord(
            storage_pb2.PutRecordRequest(
                tenant="1804",
                patient_id=person_number(),
                kind="test.e2e",
                key="k",
                idempotency_key="e2e-1",
                payload=storage_pb2.Payload(data=b"{}", content_type="application/json"),
            ),
            metadata=bearer(token.stdout.strip()),
            timeout=10,
        )
    assert stored.record.version == 1 and stored.record.provenance.author_hpr_number == "1234567"

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOPPED_WITHIN_SECONDS) == 0
    survivors = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == []
    assert not psutil.pid_exists(postmaster_pid) or psutil.Process(postmaster_pid).status() == psutil.STATUS_ZOMBIE
    log = (data_dir / "up.log").read_text()
    assert "database stopped" in log


def test_services_answer_standard_tools_through_reflection(mesh):
    _, ports, _, _ = mesh
    grpcurl = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    for name, port in ports.items():
        wait_serving(f"127.0.0.1:{port}", READY_WITHIN_SECONDS)
        listed = subprocess.run(
            [grpcurl, "-plaintext", f"127.0.0.1:{port}", "list"], capture_output=True, text=True, timeout=30
        )
        assert listed.returncode == 0, listed.stderr
        assert f"samhandling.{name}.v1." in listed.stdout
        assert "grpc.health.v1.Health" in listed.stdout

    bad = subprocess.run(
        [
            grpcurl,
            "-plaintext",
            "-d",
            '{"tenant": "1804"}',
            f"127.0.0.1:{ports['storage']}",
            "samhandling.storage.v1.StorageService/GetRecord",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "Unauthenticated" in bad.stdout + bad.stderr
    assert "MISSING_TOKEN" in bad.stdout + bad.stderr


def test_a_second_up_on_the_same_data_dir_is_refused(mesh):
    _, ports, data_dir, env = mesh
    wait_serving(f"127.0.0.1:{ports['storage']}", READY_WITHIN_SECONDS)
    second = subprocess.run(
        [*SAMHANDLING, "up", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode != 0
    assert "another `samhandling up`" in second.stderr


def test_a_service_that_dies_is_restarted(mesh):
    process, ports, _, _ = mesh
    target = f"127.0.0.1:{ports['access']}"
    wait_serving(target, READY_WITHIN_SECONDS)
    (access,) = [p for p in psutil.Process(process.pid).children() if p.cmdline()[-1] == "access"]

    access.kill()
    access.wait(timeout=10)

    wait_serving(target, 30)
    (restarted,) = [p for p in psutil.Process(process.pid).children() if p.cmdline()[-1] == "access"]
    assert restarted.pid != access.pid


def test_a_stop_during_start_up_still_stops_the_database(tmp_path):
    args = ["up", "--data-dir", str(tmp_path)]
    for name in SERVICES:
        args += [f"--{name}-port", str(free_port())]
    process = start(args, clean_env(), tmp_path / "up.log")
    postmaster_pid_file = tmp_path / "postgres" / "postmaster.pid"
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while not postmaster_pid_file.exists():
        assert time.monotonic() < deadline and process.poll() is None, "the database never started"
        time.sleep(0.02)

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=STOPPED_WITHIN_SECONDS) == 0
    assert not postmaster_pid_file.exists()
