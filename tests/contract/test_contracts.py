"""The protobuf contracts: generated code matches the .proto files, and the files follow buf style."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from services import codegen

PROTOS = Path(codegen.PROTO_ROOT)


def test_generated_code_is_not_stale():
    assert codegen.stale_files() == [], "run `make proto` and commit the result"


def test_a_changed_proto_makes_the_check_fail(tmp_path):
    copy = tmp_path / "protos"
    shutil.copytree(PROTOS, copy)
    proto = copy / "samhandling" / "news2" / "v1" / "news2.proto"
    proto.write_text(proto.read_text() + "\nmessage ExtraForStalenessCheck {}\n")
    stale = codegen.stale_files(copy)
    assert "samhandling/news2/v1/news2_pb2.py" in stale
    assert all(path.startswith("samhandling/news2/v1/") for path in stale)


def test_protos_pass_buf_lint():
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    result = subprocess.run([buf, "lint"], cwd=PROTOS, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_has_its_package_and_service():
    for name, service in [
        ("storage", "StorageService"),
        ("access", "AccessService"),
        ("overview", "OverviewService"),
        ("news2", "News2Service"),
    ]:
        text = (PROTOS / "samhandling" / name / "v1" / f"{name}.proto").read_text()
        assert f"package samhandling.{name}.v1;" in text and f"service {service}" in text
