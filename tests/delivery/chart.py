"""Rendering the chart offline with the real Helm engine (helm-python-sdk) and reading the result."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "samhandling"
EXAMPLES = CHART / "examples"
RELEASE = "samhandling"
NAMESPACE = "samhandling"
SERVICES = ("access", "overview", "news2", "storage")
GRPC_SERVICES = {
    "access": "samhandling.access.v1.AccessService",
    "overview": "samhandling.overview.v1.OverviewService",
    "news2": "samhandling.news2.v1.News2Service",
    "storage": "samhandling.storage.v1.StorageService",
}
# Who may call whom inside the release (architecture: overview and news2 call access; all three call storage).
CALLERS = {
    "access": {"overview", "news2"},
    "overview": set(),
    "news2": set(),
    "storage": {"access", "overview", "news2"},
}
VENDOR_FACING = ("access", "overview", "news2")
# Every values file the chart is checked with: the defaults and each example.
VALUES_FILES = ["defaults", *sorted(path.stem for path in EXAMPLES.glob("*.yaml"))]


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


@dataclass
class Rendered:
    """One rendering: every manifest with the template it came from, plus NOTES.txt."""

    manifests: list[dict[str, Any]]
    templates: dict[str, str]
    notes: str
    release: str
    namespace: str
    # The values given on top of the chart's defaults.
    values: dict[str, Any]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = [m for m in self.of_kind(kind) if m["metadata"]["name"] == name]
        return found

    def hooks(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.manifests if is_hook(m) and (kind is None or m["kind"] == kind)]

    def regular(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.of_kind(kind) if not is_hook(m)]

    def deployment(self, service: str) -> dict[str, Any]:
        (found,) = [d for d in self.of_kind("Deployment") if component(d) == service]
        return found

    def pod(self, service: str) -> dict[str, Any]:
        return self.deployment(service)["spec"]["template"]["spec"]

    def container(self, service: str) -> dict[str, Any]:
        (found,) = self.pod(service)["containers"]
        return found

    def pod_specs(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(manifest, pod spec) for every workload: Deployments, Jobs and bare Pods."""
        for manifest in self.manifests:
            if manifest["kind"] in ("Deployment", "Job"):
                yield manifest, manifest["spec"]["template"]["spec"]
            elif manifest["kind"] == "Pod":
                yield manifest, manifest["spec"]


def is_hook(manifest: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (manifest["metadata"].get("annotations") or {})


def component(manifest: dict[str, Any]) -> str:
    return manifest["metadata"]["labels"]["app.kubernetes.io/component"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def render(
    chart: helm.Chart, values: dict[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> Rendered:
    templates = chart.render(values=values or {}, name=release, namespace=namespace, is_install=True)
    manifests: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(templates.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for document in yaml.safe_load_all(text):
            if document:
                manifests.append(document)
    return Rendered(manifests, templates, notes, release, namespace, values or {})
