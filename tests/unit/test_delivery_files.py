"""The delivery files reference what exists (the Kubernetes issue adds real rendering checks)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_skaffold_references_only_paths_that_exist():
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    for artifact in config["build"]["artifacts"]:
        context = ROOT / artifact.get("context", ".")
        assert (context / artifact["docker"]["dockerfile"]).is_file()
    for release in config["deploy"]["helm"]["releases"]:
        chart = ROOT / release["chartPath"]
        assert (chart / "Chart.yaml").is_file()
        assert yaml.safe_load((chart / "Chart.yaml").read_text())["name"] == release["name"]


def test_every_chart_value_has_a_comment():
    lines = (ROOT / "charts" / "samhandling" / "values.yaml").read_text().splitlines()
    yaml.safe_load("\n".join(lines))
    for index, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            assert lines[index - 1].lstrip().startswith("#"), f"values.yaml line {index + 1} has no comment"


def test_the_image_runs_the_samhandling_command_as_a_non_root_user():
    dockerfile = (ROOT / "services" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["samhandling"]' in dockerfile
    assert "USER 10001" in dockerfile
