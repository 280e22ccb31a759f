"""The Kubernetes manifests in k8s/: rendered per overlay, checked for what the issue requires
(probes, limits, downward API env, scrape config), validated with kubernetes-validate --strict
(core kinds) and against the required fields of the prometheus-operator CRDs.

Rendering uses ``kubectl kustomize`` (or ``kustomize build``) when one is installed, and otherwise
a small Python renderer covering exactly the kustomize features k8s/ uses; when both are available
a test checks they agree, so the fallback stays honest.

The ConfigMaps come from the project's own collector/, prometheus/ and alertmanager/ files,
through a kustomization.yaml in each of those directories (kustomize reads files only below a kustomization's
root; see docs/kubernetes.md). Until those exist, rendering uses a copy of the tree in a temp dir
with the kustomizations ``shared_kustomization`` writes, and the stubs below for missing files.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("dev", "production")
NAMESPACES = {"dev": "sizewise-dev", "production": "sizewise"}
K8S_VERSION = "1.32.0"  # the oldest Kubernetes the manifests promise to work on
CRD_KINDS = {"ServiceMonitor", "PodMonitor"}
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}

# collector/, prometheus/ and alertmanager/ belong to other parts of the project; the stubs stand in for files
# that do not exist yet, so the manifests can be rendered and checked meanwhile.
STUBS = {
    "collector/config.yaml": "receivers: {}\n",
    "prometheus/prometheus.yml": "global:\n  scrape_interval: 15s\n",
    "prometheus/rules/sizewise.yml": "groups: []\n",
    "alertmanager/alertmanager.yml": "route:\n  receiver: default\nreceivers:\n  - name: default\n",
}


Obj = dict[str, Any]


def load_docs(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if d]


SHARED_DIRS = ("collector", "prometheus", "alertmanager")


def shared_kustomization(directory: Path) -> str:
    """The kustomization.yaml each shared directory carries (what `render` should write)."""
    if directory.name == "collector":
        gens = [{"name": "collector-config", "files": ["config.yaml"]}]
    elif directory.name == "prometheus":
        rules = sorted(p.relative_to(directory).as_posix() for p in (directory / "rules").glob("*.yml"))
        gens = [{"name": "prometheus-config", "files": ["prometheus.yml"]},
                {"name": "prometheus-rules", "files": rules}]
    else:
        templates = sorted(p.relative_to(directory).as_posix()
                           for p in (directory / "templates").glob("*.tmpl"))
        gens = [{"name": "alertmanager-config", "files": ["alertmanager.yml"]},
                {"name": "alertmanager-templates", "files": templates}]
    return yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                           "configMapGenerator": gens}, sort_keys=False)


def shared_dirs_ready(root: Path) -> bool:
    return all((root / d / "kustomization.yaml").exists() for d in SHARED_DIRS)


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo itself once the shared kustomizations exist; otherwise a completed copy of it."""
    if shared_dirs_ready(REPO):
        return REPO
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(K8S, root / "k8s")
    for name in SHARED_DIRS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, root / name)
    for rel, text in STUBS.items():
        path = root / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for name in SHARED_DIRS:
        if not (root / name / "kustomization.yaml").exists():
            (root / name / "kustomization.yaml").write_text(shared_kustomization(root / name))
    return root


# --- rendering ------------------------------------------------------------------------------


def kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def render_with_tool(directory: Path) -> list[Obj]:
    cmd = kustomize_command()
    assert cmd is not None
    out = subprocess.run([*cmd, str(directory)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return load_docs(out.stdout)


def _read_kustomization(directory: Path) -> Obj:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).exists():
            return yaml.safe_load((directory / name).read_text()) or {}
    raise FileNotFoundError(f"no kustomization in {directory}")


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge, as far as k8s/ needs: maps merge, null deletes, named lists merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = _merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(i, dict) and "name" in i for i in base + patch)):
        out_list = [copy.deepcopy(i) for i in base]
        for item in patch:
            idx = next((n for n, b in enumerate(out_list) if b["name"] == item["name"]), None)
            if idx is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[idx] = _merge(out_list[idx], item)
        return out_list
    return copy.deepcopy(patch)


def _json6902(obj: Obj, ops: list[Obj]) -> None:
    for op in ops:
        *parents, last = [p for p in op["path"].split("/") if p]
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] in ("add", "replace"):
            node[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del node[last]
        else:
            raise NotImplementedError(op["op"])


def _matches(obj: Obj, target: Obj) -> bool:
    return all(obj.get(k) == v if k == "kind" else obj["metadata"].get(k) == v
               for k, v in target.items() if k in ("kind", "name"))


def _pod_templates(obj: Obj) -> list[Obj]:
    tmpl = obj.get("spec", {}).get("template")
    return [tmpl] if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet") and tmpl else []


def render_in_python(directory: Path) -> list[Obj]:
    """A renderer for the kustomize features k8s/ uses; ConfigMap names carry no hash suffix."""
    kz = _read_kustomization(directory)
    objs: list[Obj] = []
    for res in kz.get("resources", []):
        path = (directory / res).resolve()
        objs += render_in_python(path) if path.is_dir() else load_docs(path.read_text())
    for gen in kz.get("configMapGenerator", []):
        data: dict[str, str] = {}
        for f in gen.get("files", []):
            key, _, src = f.partition("=") if "=" in f else (Path(f).name, "", f)
            data[key] = (directory / src).read_text()
        for lit in gen.get("literals", []):
            key, _, value = lit.partition("=")
            data[key] = value
        existing = next((o for o in objs if o["kind"] == "ConfigMap"
                         and o["metadata"]["name"] == gen["name"]), None)
        if gen.get("behavior") == "merge":
            assert existing is not None, f"merge into missing ConfigMap {gen['name']}"
            existing["data"].update(data)
        else:
            objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": gen["name"]}, "data": data})
    for comp in kz.get("components", []):
        objs += render_in_python((directory / comp).resolve())
    for patch in kz.get("patches", []):
        if "path" in patch:
            doc = load_docs((directory / patch["path"]).read_text())[0]
            target = {"kind": doc["kind"], "name": doc["metadata"]["name"]}
            for n, obj in enumerate(objs):
                if _matches(obj, target):
                    objs[n] = _merge(obj, doc)
        else:
            for obj in objs:
                if _matches(obj, patch["target"]):
                    _json6902(obj, yaml.safe_load(patch["patch"]))
    if "namespace" in kz:
        for obj in objs:
            if obj["kind"] not in CLUSTER_KINDS:
                obj["metadata"]["namespace"] = kz["namespace"]
            for subject in obj.get("subjects", []) if obj["kind"] == "ClusterRoleBinding" else []:
                subject["namespace"] = kz["namespace"]
    for label in kz.get("labels", []):
        for obj in objs:
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
            if label.get("includeTemplates"):
                for tmpl in _pod_templates(obj):
                    tmpl.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for image in kz.get("images", []):
        for obj in objs:
            for tmpl in _pod_templates(obj):
                for c in tmpl["spec"]["containers"]:
                    name = c["image"].split(":")[0]
                    if name == image["name"]:
                        c["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    return objs


_HASH = re.compile(r"-[a-z0-9]{10}$")


def normalize(objs: list[Obj], known_configmaps: set[str]) -> list[Obj]:
    """Drop ConfigMap hash suffixes and list order of named items, for comparing renderings."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fix(v) for k, v in node.items()}
        if isinstance(node, list):
            items = [fix(i) for i in node]
            if items and all(isinstance(i, dict) and "name" in i for i in items):
                items.sort(key=lambda i: str(i["name"]))
            return items
        if isinstance(node, str) and _HASH.search(node) and _HASH.sub("", node) in known_configmaps:
            return _HASH.sub("", node)
        return node

    return sorted((fix(o) for o in objs), key=lambda o: (o["kind"], o["metadata"]["name"]))


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def rendered(tree: Path) -> dict[str, list[Obj]]:
    use_tool = kustomize_command() is not None
    return {name: (render_with_tool if use_tool else render_in_python)(tree / "k8s/overlays" / name)
            for name in OVERLAYS}


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


# --- the app Deployment: probes, limits, downward API env, scrape config -------------------


def check_app_deployment(objs: list[Obj]) -> None:
    from sizewise_otel.telemetry import K8S_ENV

    deploy = find(objs, "Deployment", "sizewise-hvac")
    pod = deploy["spec"]["template"]
    spec = pod["spec"]
    app = container(deploy, "app")
    ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    http_port = ports["http"]

    # Probes: liveness /livez, readiness /readyz, a startup probe that covers a slow start.
    def probe_target(probe: Obj) -> tuple[str, int]:
        port = probe["httpGet"]["port"]
        return probe["httpGet"]["path"], ports[port] if isinstance(port, str) else port

    assert probe_target(app["livenessProbe"]) == ("/livez", http_port)
    assert probe_target(app["readinessProbe"]) == ("/readyz", http_port)
    startup = app["startupProbe"]
    assert probe_target(startup)[1] == http_port
    assert startup["httpGet"]["path"] in ("/livez", "/readyz")
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30

    # Requests and limits for CPU and memory, limits >= requests (the container metrics need a
    # quota and a limit to report against).
    res = app["resources"]
    for kind in ("cpu", "memory"):
        assert quantity(res["limits"][kind]) >= quantity(res["requests"][kind]) > 0

    # Downward API: the exact names sizewise_otel/telemetry.py turns into k8s.* attributes.
    env = env_of(app)
    field_of = {"K8S_POD_NAME": "metadata.name", "K8S_NAMESPACE_NAME": "metadata.namespace",
                "K8S_NODE_NAME": "spec.nodeName", "K8S_POD_UID": "metadata.uid"}
    for name, path in field_of.items():
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == path, name
    assert env["K8S_CONTAINER_NAME"]["value"] == app["name"]
    assert env["K8S_DEPLOYMENT_NAME"]["value"] == deploy["metadata"]["name"]
    for name in ("K8S_POD_NAME", "K8S_NAMESPACE_NAME", "K8S_NODE_NAME", "K8S_CONTAINER_NAME",
                 "K8S_DEPLOYMENT_NAME"):
        assert name in K8S_ENV
    assert "k8s.pod.uid=$(K8S_POD_UID)" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
    # $(VAR) expands only for variables defined earlier in the list.
    names = [e["name"] for e in app["env"]]
    assert names.index("K8S_POD_UID") < names.index("OTEL_RESOURCE_ATTRIBUTES")

    # OTLP goes to the collector Service, on a port it exposes.
    endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"]
    match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", endpoint)
    assert match, endpoint
    svc = find(objs, "Service", match.group(1))
    assert int(match.group(2)) in {p["port"] for p in svc["spec"]["ports"]}
    assert svc["spec"]["selector"]["app.kubernetes.io/name"] == "otel-collector"

    # Scrape config: prometheus.io/* annotations on the pods, naming the real port and path.
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == http_port
    assert ann["prometheus.io/path"] == "/metrics"

    # Non-root, read-only root filesystem, a writable emptyDir for the data.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    sc = app["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in app["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/data"]]
    assert env["DATABASE_URL"]["value"].startswith("sqlite:////data/")

    # The HPA owns the replica count.
    assert "replicas" not in deploy["spec"]


def test_base_deployment_file() -> None:
    """The raw base file, so the checks run even where nothing can render kustomize."""
    objs = load_docs((K8S / "base/app-deployment.yaml").read_text())
    objs += load_docs((K8S / "base/collector-service.yaml").read_text())
    check_app_deployment(objs)


def test_rendered_app_deployment(rendered: dict[str, list[Obj]], overlay: str) -> None:
    check_app_deployment(rendered[overlay])


def test_service_monitor_and_scrape_targets(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    deploy = find(objs, "Deployment", "sizewise-hvac")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    svc = find(objs, "Service", "sizewise-app")
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in container(deploy, "app")["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    monitors = [o for o in objs if o["kind"] == "ServiceMonitor"]
    if overlay == "dev":
        assert monitors == []  # dev clusters seldom run prometheus-operator
        return
    (sm,) = monitors
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert sm["metadata"]["namespace"] == NAMESPACES[overlay]


# --- every overlay hangs together -----------------------------------------------------------


def test_namespaces(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    ns = NAMESPACES[overlay]
    assert find(objs, "Namespace")["metadata"]["name"] == ns
    for obj in objs:
        if obj["kind"] not in CLUSTER_KINDS:
            assert obj["metadata"]["namespace"] == ns, obj["metadata"]["name"]
    binding = find(objs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "otel-collector", "namespace": ns}]
    role = find(objs, "ClusterRole")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    # Cluster-wide names differ per overlay, so dev and production can share a cluster.
    others = [find(rendered[o], "ClusterRole")["metadata"]["name"] for o in OVERLAYS if o != overlay]
    assert role["metadata"]["name"] not in others


def test_references_resolve(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """Every ConfigMap, Secret-less volume, ServiceAccount and selector points at something real."""
    objs = rendered[overlay]
    configmaps = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    accounts = {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"}
    claims = {o["metadata"]["name"] for o in objs if o["kind"] == "PersistentVolumeClaim"}
    for deploy in (o for o in objs if o["kind"] == "Deployment"):
        spec = deploy["spec"]["template"]["spec"]
        assert deploy["spec"]["selector"]["matchLabels"].items() <= \
            deploy["spec"]["template"]["metadata"]["labels"].items()
        if "serviceAccountName" in spec:
            assert spec["serviceAccountName"] in accounts
        volume_names = set()
        for vol in spec.get("volumes", []):
            volume_names.add(vol["name"])
            if "configMap" in vol and not vol["configMap"].get("optional"):
                assert vol["configMap"]["name"] in configmaps, vol
            if "persistentVolumeClaim" in vol:
                assert vol["persistentVolumeClaim"]["claimName"] in claims
        for c in spec["containers"]:
            assert {m["name"] for m in c.get("volumeMounts", [])} <= volume_names
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    assert src["configMapRef"]["name"] in configmaps
            assert "resources" in c and c["resources"]["limits"] and c["resources"]["requests"]
    for svc in (o for o in objs if o["kind"] == "Service"):
        assert any(svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in objs if d["kind"] == "Deployment"), svc["metadata"]["name"]
    hpa = find(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    find(objs, hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"])
    pdb = find(objs, "PodDisruptionBudget")
    app = find(objs, "Deployment", "sizewise-hvac")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= \
        app["spec"]["template"]["metadata"]["labels"].items()


def test_overlay_differences(rendered: dict[str, list[Obj]]) -> None:
    dev, prod = rendered["dev"], rendered["production"]
    assert find(dev, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 1
    assert find(prod, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 3
    # Production keeps two serving through a drain, and the budget leaves room for one eviction.
    pdb = find(prod, "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] < find(prod, "HorizontalPodAutoscaler")["spec"]["minReplicas"]

    def limits(objs: list[Obj]) -> float:
        return quantity(container(find(objs, "Deployment", "sizewise-hvac"), "app")
                        ["resources"]["limits"]["memory"])

    assert limits(prod) > limits(dev)

    def api_keys(objs: list[Obj]) -> Obj:
        return env_of(container(find(objs, "Deployment", "sizewise-hvac"), "app"))["SIZEWISE_API_KEYS"]

    # Production refuses to start open; dev may run without keys.
    assert api_keys(prod)["valueFrom"]["secretKeyRef"]["optional"] is False
    assert api_keys(dev)["valueFrom"]["secretKeyRef"]["optional"] is True

    def config(objs: list[Obj]) -> dict[str, str]:
        cms = [o for o in objs if o["kind"] == "ConfigMap"
               and o["metadata"]["name"].startswith("sizewise-config")]
        return cms[0]["data"]

    assert config(dev)["DEPLOYMENT_ENVIRONMENT"] == "development"
    assert config(prod)["DEPLOYMENT_ENVIRONMENT"] == "production"
    assert float(config(dev)["OTEL_TRACES_SAMPLER_ARG"]) == 1.0
    prom = find(prod, "Deployment", "prometheus")["spec"]["template"]["spec"]
    assert any("persistentVolumeClaim" in v for v in prom["volumes"])


def test_configmaps_come_from_the_project_files(rendered: dict[str, list[Obj]], tree: Path,
                                                overlay: str) -> None:
    objs = rendered[overlay]

    def cm(prefix: str) -> dict[str, str]:
        (hit,) = [o for o in objs if o["kind"] == "ConfigMap"
                  and re.fullmatch(rf"{prefix}(-[a-z0-9]{{10}})?", o["metadata"]["name"])]
        return hit["data"]

    assert cm("collector-config-k8s")["config.yaml"] == (K8S / "collector/config.yaml").read_text()
    assert cm("collector-config")["config.yaml"] == (tree / "collector/config.yaml").read_text()
    assert cm("prometheus-config")["prometheus.yml"] == (tree / "prometheus/prometheus.yml").read_text()
    assert cm("alertmanager-config")["alertmanager.yml"] == \
        (tree / "alertmanager/alertmanager.yml").read_text()
    rules = cm("prometheus-rules")
    assert set(rules) == {p.name for p in (tree / "prometheus/rules").glob("*.yml")}
    for path in (tree / "prometheus/rules").glob("*.yml"):
        assert rules[path.name] == path.read_text()
    templates = cm("alertmanager-templates") or {}
    assert set(templates) == {p.name for p in (tree / "alertmanager/templates").glob("*.tmpl")}


def test_shared_config_dirs_carry_their_kustomization() -> None:
    present = [d for d in SHARED_DIRS if (REPO / d).is_dir()]
    if not present:
        pytest.skip("collector/, prometheus/ and alertmanager/ do not exist yet")
    missing = [d for d in SHARED_DIRS if not (REPO / d / "kustomization.yaml").exists()]
    if missing:
        pytest.skip(", ".join(f"{d}/kustomization.yaml" for d in missing) + " not written yet "
                    "(docs/kubernetes.md says what each holds); the overlays were rendered with "
                    "generated ones")
    for d in SHARED_DIRS:
        kz = yaml.safe_load((REPO / d / "kustomization.yaml").read_text())
        expected = yaml.safe_load(shared_kustomization(REPO / d))
        assert kz["configMapGenerator"] == expected["configMapGenerator"], f"{d}/kustomization.yaml"


def test_python_renderer_agrees_with_kustomize(tree: Path, overlay: str) -> None:
    if kustomize_command() is None:
        pytest.skip("neither kubectl nor kustomize is installed: nothing to compare against")
    python = render_in_python(tree / "k8s/overlays" / overlay)
    names = {o["metadata"]["name"] for o in python if o["kind"] == "ConfigMap"}
    tool = render_with_tool(tree / "k8s/overlays" / overlay)
    assert normalize(python, names) == normalize(tool, names)


# --- schemas --------------------------------------------------------------------------------


def test_core_kinds_validate_strict(rendered: dict[str, list[Obj]], overlay: str) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (pip install kubernetes-validate; a test dependency)",
    )
    checked = 0
    for obj in rendered[overlay]:
        if obj["kind"] in CRD_KINDS:
            continue
        kv.validate(obj, K8S_VERSION, strict=True)  # raises ValidationError with the path
        checked += 1
    assert checked >= 15


def test_base_files_validate_strict() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    for path in sorted((K8S / "base").glob("*.yaml")) + sorted(K8S.glob("overlays/*/namespace.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for obj in load_docs(path.read_text()):
            kv.validate(obj, K8S_VERSION, strict=True)


def test_kubernetes_validate_cli_offline(rendered: dict[str, list[Obj]], tmp_path: Path) -> None:
    """The command CI runs: `kubernetes-validate --strict`, on files, with no network needed."""
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    files = []
    for overlay_name in OVERLAYS:
        for n, obj in enumerate(rendered[overlay_name]):
            if obj["kind"] not in CRD_KINDS:
                path = tmp_path / f"{overlay_name}-{n:02d}-{obj['kind']}.yaml"
                path.write_text(yaml.safe_dump(obj))
                files.append(str(path))
    # Any network use would fail through this dead proxy: the schemas must ship with the package.
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "https_proxy": dead,
           "http_proxy": dead, "NO_PROXY": "", "no_proxy": ""}
    out = subprocess.run([exe, "--strict", "--quiet", "-k", K8S_VERSION, *files],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr


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


def crd_objects() -> Iterator[Obj]:
    for path in sorted(K8S.glob("components/*/*.yaml")):
        for obj in load_docs(path.read_text()):
            if obj.get("kind") in CRD_KINDS:
                yield obj


def test_crd_kinds_have_required_fields() -> None:
    import jsonschema

    objs = list(crd_objects())
    assert {o["kind"] for o in objs} == CRD_KINDS
    for obj in objs:
        jsonschema.validate(obj, CRD_SCHEMAS[obj["kind"]])
    broken = copy.deepcopy(objs[0])
    del broken["spec"]["selector"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CRD_SCHEMAS[broken["kind"]])


def test_pod_monitor_targets_the_collector(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["production"]
    pm = find(objs, "PodMonitor")
    collector = find(objs, "Deployment", "otel-collector")
    assert pm["spec"]["selector"]["matchLabels"].items() <= \
        collector["spec"]["template"]["metadata"]["labels"].items()
    ports = {p["name"] for p in container(collector, "otel-collector")["ports"]}
    assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} <= ports


# --- the collector: k8sattributes, its RBAC, the builder manifest ---------------------------


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


def collector_config(tree: Path) -> Obj:
    """collector/config.yaml with k8s/collector/config.yaml over it, as the Deployment's args say."""
    return merge_collector_configs(yaml.safe_load((tree / "collector/config.yaml").read_text()),
                                   yaml.safe_load((K8S / "collector/config.yaml").read_text()))


def test_collector_args_merge_both_configs(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
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
    if not (REPO / "collector/config.yaml").exists():
        pytest.skip("collector/config.yaml does not exist yet")
    cfg = collector_config(REPO)
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
    if not (REPO / "collector/config.yaml").exists():
        return
    cfg = collector_config(REPO)
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for comp in cfg.get(kind) or {}:
            ctype = comp.split("/")[0]
            module = _MODULE_OF.get(ctype, ctype.replace("_", "") + kind[:-1])
            assert module in names.get(kind, set()), f"{comp} ({module}) missing from builder-config.yaml"
    # Everything the compose distribution has, the k8s one has too (same versions).
    shared = REPO / "collector/builder-config.yaml"
    if shared.exists():
        for kind, entries in builder_modules(shared).items():
            for module, version in entries.items():
                assert modules.get(kind, {}).get(module) == version, module


def test_collector_rbac_covers_k8sattributes(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    role = find(objs, "ClusterRole")
    granted = {(group, res): set(rule["verbs"]) for rule in role["rules"]
               for group in rule["apiGroups"] for res in rule["resources"]}
    for need in (("", "pods"), ("", "namespaces"), ("", "nodes"), ("apps", "replicasets")):
        assert {"get", "list", "watch"} <= granted[need], need
    assert all(v <= {"get", "list", "watch"} for v in granted.values())  # read-only
    collector = find(objs, "Deployment", "otel-collector")
    assert collector["spec"]["template"]["spec"]["serviceAccountName"] == \
        find(objs, "ClusterRoleBinding")["subjects"][0]["name"]


def test_prometheus_and_alertmanager_paths_match_their_configs(rendered: dict[str, list[Obj]],
                                                               tree: Path) -> None:
    """prometheus.yml's rule_files and targets, alertmanager.yml's templates and secrets resolve."""
    objs = rendered["production"]
    prom = container(find(objs, "Deployment", "prometheus"), "prometheus")
    config_file = next(a.split("=", 1)[1] for a in prom["args"] if a.startswith("--config.file="))
    mounts = {m["mountPath"] for m in prom["volumeMounts"]}
    assert config_file in mounts
    prom_cfg = yaml.safe_load((tree / "prometheus/prometheus.yml").read_text())
    for pattern in prom_cfg.get("rule_files", []):
        directory = str(Path(config_file).parent / Path(pattern).parent)
        assert directory in mounts, pattern
    services = {o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]}
                for o in objs if o["kind"] == "Service"}
    targets = [t for job in prom_cfg.get("scrape_configs", []) for sc in job.get("static_configs", [])
               for t in sc["targets"]]
    targets += [t for am in prom_cfg.get("alerting", {}).get("alertmanagers", [])
                for sc in am.get("static_configs", []) for t in sc["targets"]]
    for target in targets:
        host, _, port = target.partition(":")
        if host != "localhost":
            assert int(port) in services.get(host, set()), f"{target}: no such Service port"

    am = container(find(objs, "Deployment", "alertmanager"), "alertmanager")
    am_mounts = {m["mountPath"] for m in am["volumeMounts"]}
    am_cfg_text = (tree / "alertmanager/alertmanager.yml").read_text()
    am_cfg = yaml.safe_load(am_cfg_text)
    for pattern in am_cfg.get("templates", []):
        assert str(Path("/etc/alertmanager") / Path(pattern).parent) in am_mounts, pattern
    for secret_file in re.findall(r"_file:\s*(/\S+)", am_cfg_text):
        assert str(Path(secret_file).parent) in am_mounts, secret_file
    for url in re.findall(r"url:\s*http://([a-z0-9-]+):(\d+)", am_cfg_text):
        assert int(url[1]) in services.get(url[0], set()), url


def test_kustomization_paths_exist() -> None:
    for kz_path in K8S.rglob("kustomization.yaml"):
        kz = yaml.safe_load(kz_path.read_text())
        for res in kz.get("resources", []) + kz.get("components", []):
            target = (kz_path.parent / res).resolve()
            if target.is_relative_to(K8S):
                assert target.exists(), f"{kz_path}: {res}"
        for patch in kz.get("patches", []):
            if "path" in patch:
                assert (kz_path.parent / patch["path"]).exists(), f"{kz_path}: {patch['path']}"


def test_every_pod_meets_the_restricted_pod_security_standard(rendered: dict[str, list[Obj]],
                                                              overlay: str) -> None:
    """The namespaces enforce `restricted`: a pod that does not comply would never be created."""
    objs = rendered[overlay]
    assert find(objs, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == \
        "restricted"
    allowed_volumes = {"configMap", "emptyDir", "secret", "persistentVolumeClaim", "projected",
                       "downwardAPI"}
    for deploy in (o for o in objs if o["kind"] == "Deployment"):
        spec = deploy["spec"]["template"]["spec"]
        name = deploy["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for vol in spec.get("volumes", []):
            assert set(vol) - {"name"} <= allowed_volumes, (name, vol)
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert not sc.get("privileged", False), name
