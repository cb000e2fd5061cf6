"""skaffold.yaml (no skaffold binary here): it parses, names only paths that exist, builds the one
image from services/Dockerfile and deploys the chart with the built image passed in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.delivery.chart import CHART, ROOT, render

CONFIG = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
IMAGE = "samhandling"


def _releases() -> Iterator[tuple[str, dict[str, Any]]]:
    for release in CONFIG["deploy"]["helm"]["releases"]:
        yield "default", release
    for profile in CONFIG.get("profiles", []):
        for release in profile.get("deploy", {}).get("helm", {}).get("releases", []):
            yield profile["name"], release


def test_skaffold_yaml_is_a_v4_config():
    assert CONFIG["apiVersion"].startswith("skaffold/v4")
    assert CONFIG["kind"] == "Config"
    assert {profile["name"] for profile in CONFIG["profiles"]} >= {"dev", "test"}


def test_the_image_is_built_from_the_services_dockerfile():
    (artifact,) = CONFIG["build"]["artifacts"]
    assert artifact["image"] == IMAGE
    context = ROOT / artifact.get("context", ".")
    assert context.is_dir()
    dockerfile = context / artifact["docker"]["dockerfile"]
    assert dockerfile.is_file() and dockerfile == ROOT / "services" / "Dockerfile"
    assert (context / ".dockerignore").is_file()


@pytest.mark.parametrize(("profile", "release"), list(_releases()), ids=lambda p: p if isinstance(p, str) else "")
def test_every_release_names_only_what_exists_and_passes_the_built_image(profile: str, release: dict[str, Any]):
    chart = ROOT / release["chartPath"]
    assert chart == CHART, profile
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["name"] == release["name"]
    for values_file in release.get("valuesFiles", []):
        assert (ROOT / values_file).is_file(), f"{profile}: {values_file}"
    assert release["setValueTemplates"] == {
        "image.repository": f"{{{{.IMAGE_REPO_{IMAGE}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{IMAGE}}}}}",
        "image.digest": f"{{{{.IMAGE_DIGEST_{IMAGE}}}}}",
    }


@pytest.mark.parametrize(("profile", "release"), list(_releases()), ids=lambda p: p if isinstance(p, str) else "")
def test_every_release_renders_with_what_skaffold_would_set(profile: str, release: dict[str, Any]):
    """The values skaffold passes (files, --set, the built image) satisfy the schema and reach the pods."""
    values: dict[str, Any] = {}
    for values_file in release.get("valuesFiles", []):
        _merge(values, yaml.safe_load((ROOT / values_file).read_text()))
    for dotted, value in release.get("setValues", {}).items():
        _merge(values, helm.parse_set_string(f"{dotted}={value}"))
    digest = "sha256:" + "ab" * 32
    _merge(values, {"image": {"repository": "registry.example/samhandling", "tag": "0a1b2c3-dirty", "digest": digest}})
    with helm.Chart.load(CHART) as chart:
        rendered = render(chart, values, release=release["name"], namespace=release.get("namespace", "default"))
    for deployment in rendered.of_kind("Deployment"):
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"registry.example/samhandling:0a1b2c3-dirty@{digest}"
    # A local build is not pushed: no digest, tag only.
    _merge(values, {"image": {"digest": ""}})
    with helm.Chart.load(CHART) as chart:
        rendered = render(chart, values, release=release["name"])
    assert rendered.of_kind("Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/samhandling:0a1b2c3-dirty"
    )


def test_port_forwards_name_services_the_chart_creates():
    (dev,) = [profile for profile in CONFIG["profiles"] if profile["name"] == "dev"]
    (release,) = dev["deploy"]["helm"]["releases"]
    with helm.Chart.load(CHART) as chart:
        rendered = render(
            chart, yaml.safe_load((ROOT / release["valuesFiles"][0]).read_text()), release=release["name"]
        )
    services = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in rendered.of_kind("Service")}
    for forward in dev["portForward"]:
        assert forward["resourceType"] == "service"
        assert services[forward["resourceName"]] == forward["port"]
        assert forward["namespace"] == release["namespace"]


def _merge(target: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
