"""services/Dockerfile, checked by parsing it (there is no Docker engine here): two stages, build
tools only in the first, a numeric non-root user, no HEALTHCHECK, `samhandling` as the entrypoint,
and everything the wheel must carry declared as package data."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field

from tests.delivery.chart import ROOT

DOCKERFILE = ROOT / "services" / "Dockerfile"
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "libc6-dev", "python3-dev", "libpq-dev", "git")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for instruction, argument in self.instructions if instruction == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Instructions with continuation lines joined and comments dropped; global ARGs; stages by FROM."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "a continuation line ends the file"
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: arguments.get(m[1] or m[2], m[0]), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            arguments[key] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return arguments, stages


ARGUMENTS, STAGES = parse(DOCKERFILE.read_text())
BUILD, FINAL = STAGES[0], STAGES[-1]


def test_two_stages_on_a_slim_python_3_11_base():
    assert len(STAGES) == 2
    assert BUILD.name == "build"
    for stage in STAGES:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stage.base), stage.base


def test_build_tools_stay_in_the_build_stage():
    build_commands = " ".join(BUILD.all("RUN"))
    assert "build-essential" in build_commands
    final_commands = " ".join(FINAL.all("RUN") + FINAL.all("COPY") + FINAL.all("ENV"))
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(^|[\s/]){re.escape(tool)}($|\s)", final_commands), tool
    assert not re.search(r"\b(apt-get|apt|pip)\s+install\b", " ".join(FINAL.all("RUN")))
    # The final stage takes only the built virtual environment from the build stage.
    copies = FINAL.all("COPY")
    assert copies == ["--from=build /opt/samhandling /opt/samhandling"]


def test_the_final_stage_runs_as_a_numeric_non_root_user():
    (user,) = FINAL.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, user
    assert not gid or (gid.isdigit() and int(gid) > 0), user
    # The chart's securityContext runs the same user.
    values = (ROOT / "charts" / "samhandling" / "values.yaml").read_text()
    assert f"runAsUser: {uid}" in values
    (created,) = [run for run in FINAL.all("RUN") if "useradd" in run]
    assert f"--uid {uid}" in created


def test_samhandling_is_the_entrypoint_and_there_is_no_healthcheck():
    (entrypoint,) = FINAL.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["samhandling"]
    assert all(not stage.all("HEALTHCHECK") for stage in STAGES)
    environment = " ".join(FINAL.all("ENV"))
    assert "/opt/samhandling/bin" in environment and "PYTHONDONTWRITEBYTECODE=1" in environment


def test_the_build_installs_the_package_with_its_generated_code_migrations_and_code_list():
    copied = {shlex.split(copy)[0] for copy in BUILD.all("COPY")}
    assert {"pyproject.toml", "protos", "services"} <= copied
    assert any(re.search(r"pip install (--no-cache-dir )?\.(\s|$)", run) for run in BUILD.all("RUN"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    assert "protos" in setuptools["packages"]["find"]["where"]
    assert {"services*", "samhandling*"} <= set(setuptools["packages"]["find"]["include"])
    assert {"*.csv", "*.mako"} <= set(setuptools["package-data"]["*"])
    # What package data must carry exists where the packages are: the 9151 list and the migrations.
    assert list((ROOT / "services").glob("overview/domain/service_types_9151.csv"))
    for service in ("storage", "access"):
        migrations = ROOT / "services" / service / "migrations"
        assert (migrations / "script.py.mako").is_file() and (migrations / "versions" / "__init__.py").is_file()
    assert list((ROOT / "protos" / "samhandling").glob("*/v1/*_pb2.py"))
    assert list((ROOT / "protos" / "samhandling").glob("*/v1/*_pb2_grpc.py"))


def test_the_build_context_leaves_out_local_state():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".samhandling", "tests", ".git"} <= ignored
    assert any("__pycache__" in line for line in ignored)
    assert not {"protos", "services", "pyproject.toml", "README.md"} & ignored
