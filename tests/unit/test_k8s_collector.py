"""The collector in k8s/: its two merged configs with k8sattributes, the RBAC that processor needs,
and the builder manifest that must hold every component the config names. Manifests come from the
real kustomize (k8s_render)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.k8s_render import K8S, OVERLAYS, REPO, Obj, container, find, render


def merge_collector_configs(*configs: Obj) -> Obj:
    """How the collector merges several --config files: maps key by key, later lists replace."""
    out: Obj = {}
    for cfg in configs:
        out = _merge_maps(out, cfg)
    return out


def _merge_maps(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge_maps(base[key], value) if key in base else value
        return merged
    return over


def collector_config() -> Obj:
    """collector/config.yaml with k8s/collector/config.yaml over it, as the Deployment's args say."""
    return merge_collector_configs(yaml.safe_load((REPO / "collector/config.yaml").read_text()),
                                   yaml.safe_load((K8S / "collector/config.yaml").read_text()))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_collector_args_merge_both_configs(overlay: str) -> None:
    objs = render(f"k8s/overlays/{overlay}")
    deploy = find(objs, "Deployment", "otel-collector")
    spec = deploy["spec"]["template"]["spec"]
    c = container(deploy, "otel-collector")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
    by_cm = {re.sub(r"-[a-z0-9]{10}$", "", volumes[name]): path for name, path in mounts.items()}
    # Base first, the k8s additions second: later files win.
    assert c["args"] == [f"--config={by_cm['collector-config']}/config.yaml",
                         f"--config={by_cm['collector-config-k8s']}/config.yaml"]


def test_collector_config_uses_k8sattributes() -> None:
    cfg = collector_config()
    k8s = cfg["processors"]["k8sattributes"]
    metadata = set(k8s["extract"]["metadata"])
    assert {"k8s.pod.name", "k8s.namespace.name", "k8s.node.name", "k8s.deployment.name"} <= metadata
    sources = [s["from"] for rule in k8s["pod_association"] for s in rule["sources"]]
    assert "connection" in sources  # gateway: the app pods connect directly
    base = yaml.safe_load((REPO / "collector/config.yaml").read_text())
    assert set(cfg["service"]["pipelines"]) == set(base["service"]["pipelines"])
    for name, pipeline in cfg["service"]["pipelines"].items():
        assert "k8sattributes" in pipeline["processors"], name
        # memory_limiter first, batch last, the rest of the base pipeline kept in its order.
        assert pipeline["processors"][0] == "memory_limiter"
        assert pipeline["processors"][-1] == "batch"
        without = [p for p in pipeline["processors"] if p != "k8sattributes"]
        assert without == base["service"]["pipelines"][name]["processors"], name
        assert pipeline["receivers"] and pipeline["exporters"]
        for kind in ("receivers", "processors", "exporters"):
            for comp in pipeline[kind]:
                assert comp in cfg[kind], f"{name}: {kind} {comp} is not defined"
    for ext in cfg["service"].get("extensions", []):
        assert ext in cfg["extensions"]


# Component type -> Go module name, where it is not simply type + kind ("otlp_grpc" is the otlp
# exporter's newer name).
_MODULE_OF = {"otlp_grpc": "otlpexporter", "otlp_http": "otlphttpexporter", "otlphttp": "otlphttpexporter"}


def builder_modules(path: Path) -> dict[str, dict[str, str]]:
    builder = yaml.safe_load(path.read_text())
    modules: dict[str, dict[str, str]] = {}
    for kind in ("receivers", "processors", "exporters", "extensions", "connectors", "providers"):
        for entry in builder.get(kind) or []:
            module, version = entry["gomod"].split()
            modules.setdefault(kind, {})[module] = version
    return modules


def test_builder_manifest_contains_every_component() -> None:
    modules = builder_modules(K8S / "collector/builder-config.yaml")
    for entries in modules.values():
        for module, version in entries.items():
            if module.startswith("go.opentelemetry.io/collector/confmap/"):
                assert version == "v1.71.0", module  # the stable modules of core v0.165.0
            elif module.startswith("go.opentelemetry.io/collector/"):
                assert version == "v0.165.0", module
            else:
                assert module.startswith("github.com/open-telemetry/opentelemetry-collector-contrib/")
                assert version == "v0.165.1", module
    names = {kind: {m.rsplit("/", 1)[1] for m in entries} for kind, entries in modules.items()}
    assert "k8sattributesprocessor" in names["processors"]
    cfg = collector_config()
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for comp in cfg.get(kind) or {}:
            ctype = comp.split("/")[0]
            module = _MODULE_OF.get(ctype, ctype.replace("_", "") + kind[:-1])
            assert module in names.get(kind, set()), f"{comp} ({module}) missing from builder-config.yaml"
    # Everything the compose distribution has, the k8s one has too (same versions).
    shared = builder_modules(REPO / "collector/builder-config.yaml")
    assert shared
    for kind, entries in shared.items():
        for module, version in entries.items():
            assert modules.get(kind, {}).get(module) == version, module


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_collector_rbac_covers_k8sattributes(overlay: str) -> None:
    objs = render(f"k8s/overlays/{overlay}")
    role = find(objs, "ClusterRole")
    granted = {(group, res): set(rule["verbs"]) for rule in role["rules"]
               for group in rule["apiGroups"] for res in rule["resources"]}
    for need in (("", "pods"), ("", "namespaces"), ("", "nodes"), ("apps", "replicasets")):
        assert {"get", "list", "watch"} <= granted[need], need
    assert all(v <= {"get", "list", "watch"} for v in granted.values())  # read-only
    collector = find(objs, "Deployment", "otel-collector")
    assert collector["spec"]["template"]["spec"]["serviceAccountName"] == \
        find(objs, "ClusterRoleBinding")["subjects"][0]["name"]
