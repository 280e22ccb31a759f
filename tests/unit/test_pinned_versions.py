"""The servers the tests run are the versions users deploy: one pin per server, kept in step.

scripts/build-servers.sh builds Prometheus and Alertmanager at the versions it names; compose.yaml and the
k8s base must pull the same images, and the collector image must match the builder manifest's release.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.tools import ROOT, pinned_version

DEPLOYED = ["compose.yaml", "k8s/base/prometheus-deployment.yaml", "k8s/base/alertmanager-deployment.yaml"]


def _images() -> dict[str, set[str]]:
    """image name -> the tags it is pulled with anywhere in the deployment files."""
    out: dict[str, set[str]] = {}
    for rel in DEPLOYED:
        for name, tag in re.findall(r"image:\s*([\w./-]+):([\w.-]+)", (ROOT / rel).read_text()):
            out.setdefault(name, set()).add(tag)
    return out


@pytest.mark.parametrize("image,tool", [("prom/prometheus", "prometheus"), ("prom/alertmanager", "alertmanager")])
def test_deployed_images_match_the_built_servers(image: str, tool: str) -> None:
    assert _images()[image] == {f"v{pinned_version(tool)}"}


def test_prometheus_is_3_x() -> None:
    # Rules, configs and dashboards target Prometheus 3 (UTF-8 names, `le` normalisation).
    assert pinned_version("prometheus").startswith("3.")


def test_collector_image_matches_the_builder_manifest() -> None:
    manifest = yaml.safe_load((ROOT / "collector/builder-config.yaml").read_text())
    assert _images()["otel/opentelemetry-collector-contrib"] == {manifest["dist"]["version"]}
