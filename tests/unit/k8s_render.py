"""k8s/ rendered by the real kustomize (``scripts/build-servers.sh kustomize``), and lookups on the output.

The tests check kustomize's own output, never a re-implementation of it: what they pass on is what
``kubectl apply -k`` would send to a cluster.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import built_tool, pinned_version

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
# Each overlay's namespace, as docs/kubernetes.md promises; a new overlay must be added here.
NAMESPACES = {"dev": "sizewise-dev", "production": "sizewise"}
OVERLAYS = tuple(sorted(p.parent.name for p in K8S.glob("overlays/*/kustomization.yaml")))
CRD_KINDS = {"ServiceMonitor", "PodMonitor"}
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
_NOT_SOURCE = {"build", "node_modules", "__pycache__"}

Obj = dict[str, Any]


def load_docs(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize() -> str:
    exe = built_tool("kustomize")
    if exe is None:
        pytest.fail(f"kustomize {pinned_version('kustomize')} is not built: "
                    "run scripts/build-servers.sh kustomize")
    return exe


def kustomizations() -> list[str]:
    """Every directory of the repo holding a kustomization.yaml, relative to the repo root."""
    found = []
    for here, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _NOT_SOURCE]
        if "kustomization.yaml" in files:
            found.append(Path(here).relative_to(REPO).as_posix())
    return sorted(found)


def kustomize_build(directory: Path) -> subprocess.CompletedProcess[str]:
    # A clean environment: kustomize needs nothing from the caller's, and a KUSTOMIZE_* or
    # XDG_CONFIG_HOME setting must not change what the tests see.
    env = {"PATH": os.defpath}
    return subprocess.run([kustomize(), "build", str(directory)], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


@functools.cache
def _render(rel: str) -> list[Obj]:
    out = kustomize_build(REPO / rel)
    assert out.returncode == 0, f"kustomize build {rel}:\n{out.stderr}"
    return load_docs(out.stdout)


def render(rel: str) -> list[Obj]:
    """``kustomize build REPO/rel`` as objects; a fresh copy each call, so tests may mutate it."""
    return copy.deepcopy(_render(rel))


def find(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    hits = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def container(deploy: Obj, name: str) -> Obj:
    return next(c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def env_of(c: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in c.get("env", [])}


def quantity(value: str | int | float) -> float:
    """CPU and memory quantities as numbers (cores, bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)
