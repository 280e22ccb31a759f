"""Every kustomization's real kustomize output, validated strictly: core kinds with kubernetes-validate
(the Python module, and the CLI CI runs, offline) against the oldest Kubernetes the manifests promise
and the newest the package knows; the prometheus-operator kinds against their CRDs' required fields.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.tools import venv_tool
from tests.unit.k8s_render import CRD_KINDS, OVERLAYS, Obj, find, kustomizations, render

K8S_VERSION = "1.32.0"  # the oldest Kubernetes the manifests promise to work on
VERSIONS = (K8S_VERSION, kubernetes_validate.latest_version())

# The required fields of the published prometheus-operator CRDs (monitoring.coreos.com/v1), plus
# the shapes SizeWise relies on: a label selector, and endpoints naming a port and a path.
_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_ENDPOINT = {
    "type": "object",
    "anyOf": [{"required": ["port"]}, {"required": ["targetPort"]}],
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string", "pattern": "^/"},
        "interval": {"type": "string", "pattern": _DURATION},
        "scrapeTimeout": {"type": "string", "pattern": _DURATION},
        "honorLabels": {"type": "boolean"},
        "relabelings": {"type": "array", "items": {"type": "object", "properties": {
            "sourceLabels": {"type": "array", "items": {"type": "string",
                                                        "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}},
            "targetLabel": {"type": "string"}}}},
    },
}
_SELECTOR = {"type": "object", "properties": {
    "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
    "matchExpressions": {"type": "array"}}}


def _crd_schema(kind: str, endpoints_key: str) -> Obj:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["selector", endpoints_key],
                "properties": {
                    "selector": _SELECTOR,
                    "jobLabel": {"type": "string"},
                    endpoints_key: {"type": "array", "minItems": 1, "items": _ENDPOINT},
                },
            },
        },
    }


CRD_SCHEMAS = {"ServiceMonitor": _crd_schema("ServiceMonitor", "endpoints"),
               "PodMonitor": _crd_schema("PodMonitor", "podMetricsEndpoints")}


@pytest.mark.parametrize("rel", kustomizations())
def test_rendered_objects_validate_strict(rel: str) -> None:
    """Every object has a schema and meets it; an unknown field is an error (--strict)."""
    for obj in render(rel):
        if obj["kind"] in CRD_KINDS:
            jsonschema.validate(obj, CRD_SCHEMAS[obj["kind"]])
            continue
        for version in VERSIONS:  # raises ValidationError with the path, SchemaNotFoundError
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_hold_the_kinds_validated(overlay: str) -> None:
    kinds = {o["kind"] for o in render(f"k8s/overlays/{overlay}")}
    assert {"Namespace", "Deployment", "Service", "ConfigMap", "ServiceAccount", "ClusterRole",
            "ClusterRoleBinding", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert (kinds & CRD_KINDS == CRD_KINDS) is (overlay == "production")


def test_strict_validation_rejects_a_misspelt_field() -> None:
    deploy = find(render("k8s/overlays/production"), "Deployment", "sizewise-hvac")
    deploy["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(deploy, K8S_VERSION, strict=True)


def test_crd_schemas_reject_a_monitor_without_selector() -> None:
    monitors = [o for o in render("k8s/overlays/production") if o["kind"] in CRD_KINDS]
    assert {o["kind"] for o in monitors} == CRD_KINDS
    for obj in monitors:
        broken = copy.deepcopy(obj)
        del broken["spec"]["selector"]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, CRD_SCHEMAS[broken["kind"]])


def run_cli(files: list[Path]) -> subprocess.CompletedProcess[str]:
    """`kubernetes-validate --strict` as CI runs it, with no network: the schemas ship with it."""
    exe = venv_tool("kubernetes-validate")
    assert exe, "kubernetes-validate is a test dependency: pip install -e '.[test]'"
    dead = "http://127.0.0.1:9"  # any network use fails through this proxy
    env = {"PATH": "/usr/bin:/bin", "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "https_proxy": dead,
           "http_proxy": dead}
    versions = [arg for v in VERSIONS for arg in ("-k", v)]
    return subprocess.run([exe, "--strict", "--quiet", *versions, *map(str, files)],
                          capture_output=True, text=True, timeout=300, env=env, check=False)


def test_kubernetes_validate_cli_offline(tmp_path: Path) -> None:
    # The overlays hold every other kustomization's output (the module test above covers each).
    files = []
    for overlay in OVERLAYS:
        path = tmp_path / f"{overlay}.yaml"
        path.write_text(yaml.safe_dump_all(render(f"k8s/overlays/{overlay}")))
        files.append(path)
    out = run_cli(files)
    assert out.returncode == 0, out.stdout + out.stderr
    # Only the CRD kinds have no bundled schema (their check is above); nothing else is skipped.
    lines = out.stdout.splitlines()
    assert lines, "no warning for the CRD kinds: did the CLI read the files?"
    for line in lines:
        assert line.startswith("WARN") and any(f"kind {k} " in line for k in CRD_KINDS), line


def test_kubernetes_validate_cli_fails_on_a_bad_manifest(tmp_path: Path) -> None:
    deploy = find(render("k8s/overlays/dev"), "Deployment", "sizewise-hvac")
    deploy["spec"]["replica"] = 2
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deploy))
    out = run_cli([path])
    assert out.returncode != 0
    assert "replica" in out.stdout
