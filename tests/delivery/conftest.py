"""One loaded chart and one rendering per values file for the whole delivery test run."""

from __future__ import annotations

from collections.abc import Iterator

import helm_python as helm
import pytest

from tests.delivery.chart import CHART, EXAMPLES, VALUES_FILES, Rendered, load_values, render


@pytest.fixture(scope="session")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def renderings(chart: helm.Chart) -> dict[str, Rendered]:
    return {
        name: render(chart, None if name == "defaults" else load_values(EXAMPLES / f"{name}.yaml"))
        for name in VALUES_FILES
    }


@pytest.fixture(params=VALUES_FILES)
def rendered(request: pytest.FixtureRequest, renderings: dict[str, Rendered]) -> Rendered:
    """The chart rendered with each values file in turn."""
    return renderings[request.param]
