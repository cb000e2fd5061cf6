"""Running `samhandling` commands as real processes, as a user or a container would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from services.platform.supervisor import health_status

SERVING = 1
SAMHANDLING = [sys.executable, "-m", "services.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment without any SAMHANDLING_* settings of the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMHANDLING_")}
    return env | overrides


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen([*SAMHANDLING, *args], env=env, stdout=handle, stderr=subprocess.STDOUT)


def wait_serving(target: str, timeout: float) -> float:
    """Seconds until the target's health service says SERVING; fails after `timeout`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if health_status(target) == SERVING:
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"{target} not SERVING within {timeout}s")


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SAMHANDLING, *args], env=env, capture_output=True, text=True, timeout=60)
