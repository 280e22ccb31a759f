"""The Kubernetes manifests in k8s/, as the real kustomize renders them: every kustomization builds,
and each overlay has what docs/kubernetes.md promises (probes, limits, downward API env, scrape
config, HPA/PDB, namespaces, labels, images, the ConfigMaps from the project's own files).

The collector's part is in test_k8s_collector.py, schema validation in test_k8s_validate.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tools import pinned_version
from tests.unit import k8s_render
from tests.unit.k8s_render import (
    CLUSTER_KINDS,
    K8S,
    NAMESPACES,
    OVERLAYS,
    REPO,
    Obj,
    container,
    env_of,
    find,
    kustomizations,
    kustomize,
    kustomize_build,
    quantity,
    render,
)

# The directories whose files become ConfigMaps (kustomize reads files only below a kustomization's
# root, so each carries its own kustomization.yaml; docs/kubernetes.md).
SHARED_DIRS = ("collector", "prometheus", "alertmanager")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
# Production's HA stack (docs/scaling.md) replaces base's single Prometheus and Alertmanager
# Deployments with StatefulSets of the same names.
REPLACED = {"production": {("Deployment", "prometheus"), ("Deployment", "alertmanager")}}


def workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in WORKLOADS]


def workload(objs: list[Obj], name: str) -> Obj:
    (hit,) = [o for o in workloads(objs) if o["metadata"]["name"] == name]
    return hit


def test_kustomize_is_the_pinned_build() -> None:
    out = subprocess.run([kustomize(), "version"], capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == f"v{pinned_version('kustomize')}"


def test_a_missing_kustomize_fails_naming_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """No kustomize means failures that say how to build it, never skips or a stand-in renderer."""
    monkeypatch.setattr(k8s_render, "built_tool", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match=re.escape("scripts/build-servers.sh kustomize")):
        k8s_render.kustomize()


def test_every_kustomization_is_found() -> None:
    found = set(kustomizations())
    assert {f"k8s/overlays/{o}" for o in NAMESPACES} | {"k8s/base", *SHARED_DIRS} <= found
    # A new overlay needs its namespace (and so its checks) declared in k8s_render.NAMESPACES.
    assert set(OVERLAYS) == set(NAMESPACES)


@pytest.mark.parametrize("rel", kustomizations())
def test_every_kustomization_builds(rel: str) -> None:
    objs = render(rel)
    assert objs, f"{rel} renders nothing"
    for obj in objs:
        assert {"apiVersion", "kind", "metadata"} <= obj.keys(), obj
        assert obj["metadata"]["name"], obj


def test_a_broken_kustomization_fails_to_build(tmp_path: Path) -> None:
    """The build tests can fail: kustomize rejects a resource that does not exist."""
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    out = kustomize_build(tmp_path)
    assert out.returncode != 0
    assert "missing.yaml" in out.stderr


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


@pytest.mark.parametrize("rel", ["k8s/base", *(f"k8s/overlays/{o}" for o in OVERLAYS)])
def test_app_deployment(rel: str) -> None:
    check_app_deployment(render(rel))


def test_app_deployment_check_can_fail() -> None:
    objs = render("k8s/overlays/production")
    app = container(find(objs, "Deployment", "sizewise-hvac"), "app")
    app["livenessProbe"]["httpGet"]["path"] = "/readyz"
    with pytest.raises(AssertionError):
        check_app_deployment(objs)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_labels_and_selectors(overlay: str) -> None:
    """The overlay's image tag and instance label reach every pod; selectors stay as written."""
    objs = render(f"k8s/overlays/{overlay}")
    kz = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    (image,) = kz["images"]
    app = container(find(objs, "Deployment", "sizewise-hvac"), "app")
    assert app["image"] == f"{image.get('newName', image['name'])}:{image['newTag']}"
    instance = {"app.kubernetes.io/instance": NAMESPACES[overlay]}
    for obj in objs:
        assert instance.items() <= obj["metadata"]["labels"].items(), obj["metadata"]["name"]
        if obj["kind"] in WORKLOADS:
            assert instance.items() <= obj["spec"]["template"]["metadata"]["labels"].items()
            # includeSelectors: false, so a selector (immutable once applied) never changes
            # between overlays or releases.
            assert not instance.keys() & obj["spec"]["selector"]["matchLabels"].keys()

    # base's own label, on all base brings (not on the overlay's Namespace, PVC or monitors).
    def key(obj: Obj) -> tuple[str, str]:  # ConfigMap hashes differ after a merge
        return obj["kind"], re.sub(r"-[a-z0-9]{10}$", "", obj["metadata"]["name"])

    from_base = {key(o) for o in render("k8s/base")}
    for obj in objs:
        if key(obj) in from_base:
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sizewise", key(obj)
    # All of base is there but its two cluster-wide names, which each overlay renames, and what
    # the overlay replaces by a workload of the same name.
    replaced = REPLACED.get(overlay, set())
    assert from_base - {key(o) for o in objs} - replaced == {
        ("ClusterRole", "sizewise-otel-collector"), ("ClusterRoleBinding", "sizewise-otel-collector")}
    assert replaced <= from_base
    for kind, name in replaced:
        assert workload(objs, name)["kind"] != kind


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_monitor_and_scrape_targets(overlay: str) -> None:
    objs = render(f"k8s/overlays/{overlay}")
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


def test_pod_monitor_targets_the_collector() -> None:
    objs = render("k8s/overlays/production")
    pm = find(objs, "PodMonitor")
    collector = find(objs, "Deployment", "otel-collector")
    assert pm["spec"]["selector"]["matchLabels"].items() <= \
        collector["spec"]["template"]["metadata"]["labels"].items()
    ports = {p["name"] for p in container(collector, "otel-collector")["ports"]}
    assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} <= ports


# --- every overlay hangs together -----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespaces(overlay: str) -> None:
    objs = render(f"k8s/overlays/{overlay}")
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
    others = [find(render(f"k8s/overlays/{o}"), "ClusterRole")["metadata"]["name"]
              for o in OVERLAYS if o != overlay]
    assert role["metadata"]["name"] not in others


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay: str) -> None:
    """Every ConfigMap, volume, ServiceAccount and selector points at something real."""
    objs = render(f"k8s/overlays/{overlay}")
    configmaps = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    accounts = {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"}
    claims = {o["metadata"]["name"] for o in objs if o["kind"] == "PersistentVolumeClaim"}
    for deploy in workloads(objs):
        spec = deploy["spec"]["template"]["spec"]
        assert deploy["spec"]["selector"]["matchLabels"].items() <= \
            deploy["spec"]["template"]["metadata"]["labels"].items()
        if "serviceAccountName" in spec:
            assert spec["serviceAccountName"] in accounts
        # a StatefulSet's per-pod claims are volumes too
        volume_names = {t["metadata"]["name"] for t in deploy["spec"].get("volumeClaimTemplates", [])}
        for vol in spec.get("volumes", []):
            volume_names.add(vol["name"])
            if "configMap" in vol and not vol["configMap"].get("optional"):
                # kustomize rewrote the name to the generated, hash-suffixed one.
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
                   for d in workloads(objs)), svc["metadata"]["name"]
    for sts in (o for o in objs if o["kind"] == "StatefulSet"):
        headless = find(objs, "Service", sts["spec"]["serviceName"])
        assert headless["spec"]["clusterIP"] == "None", sts["metadata"]["name"]
    hpa = find(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    find(objs, hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"])
    pdb = find(objs, "PodDisruptionBudget", "sizewise-hvac")
    app = find(objs, "Deployment", "sizewise-hvac")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= \
        app["spec"]["template"]["metadata"]["labels"].items()
    for budget in (o for o in objs if o["kind"] == "PodDisruptionBudget"):
        assert any(budget["spec"]["selector"]["matchLabels"].items()
                   <= w["spec"]["template"]["metadata"]["labels"].items() for w in workloads(objs))


def sizewise_config(objs: list[Obj]) -> dict[str, str]:
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"
             and re.fullmatch(r"sizewise-config-[a-z0-9]{10}", o["metadata"]["name"])]
    return cm["data"]


def test_overlay_differences() -> None:
    dev, prod = render("k8s/overlays/dev"), render("k8s/overlays/production")
    assert find(dev, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 1
    assert find(dev, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 2
    assert find(prod, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    assert find(prod, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 10
    assert find(dev, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1, "selector": find(dev, "PodDisruptionBudget")["spec"]["selector"]}
    # Production keeps two serving through a drain, and the budget leaves room for one eviction.
    pdb = find(prod, "PodDisruptionBudget", "sizewise-hvac")["spec"]
    assert "maxUnavailable" not in pdb
    assert pdb["minAvailable"] == 2 < find(prod, "HorizontalPodAutoscaler")["spec"]["minReplicas"]

    def limits(objs: list[Obj]) -> float:
        return quantity(container(find(objs, "Deployment", "sizewise-hvac"), "app")
                        ["resources"]["limits"]["memory"])

    assert limits(prod) > limits(dev)

    def api_keys(objs: list[Obj]) -> Obj:
        return env_of(container(find(objs, "Deployment", "sizewise-hvac"), "app"))["SIZEWISE_API_KEYS"]

    # Production refuses to start open; dev may run without keys.
    assert api_keys(prod)["valueFrom"]["secretKeyRef"]["optional"] is False
    assert api_keys(dev)["valueFrom"]["secretKeyRef"]["optional"] is True

    # behavior: merge keeps the base's settings and overrides the profile's.
    base = sizewise_config(render("k8s/base"))
    for objs, env, sampling in ((dev, "development", 1.0), (prod, "production", 1.0)):
        cfg = sizewise_config(objs)
        assert cfg["DEPLOYMENT_ENVIRONMENT"] == env
        assert float(cfg["OTEL_TRACES_SAMPLER_ARG"]) == sampling
        assert base.keys() <= cfg.keys()
    # Production samples at the tail (the gateways keep errors, slow traces and 10 %), so the
    # apps send every span: a head sampler would drop error traces before any gateway saw them.
    assert sizewise_config(prod)["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"
    assert float(base["OTEL_TRACES_SAMPLER_ARG"]) == 0.1
    assert sizewise_config(dev)["METRICS_RETENTION_HOURS"] == base["METRICS_RETENTION_HOURS"]
    # Production's Prometheus pair and Alertmanager peers each keep a volume of their own.
    for name, replicas in (("prometheus", 2), ("alertmanager", 3)):
        sts = find(prod, "StatefulSet", name)["spec"]
        assert sts["replicas"] == replicas and sts["volumeClaimTemplates"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmaps_come_from_the_project_files(overlay: str) -> None:
    objs = render(f"k8s/overlays/{overlay}")

    def cm(prefix: str) -> dict[str, str]:
        (hit,) = [o for o in objs if o["kind"] == "ConfigMap"
                  and re.fullmatch(rf"{prefix}-[a-z0-9]{{10}}", o["metadata"]["name"])]
        return hit["data"]

    assert cm("collector-config-k8s")["config.yaml"] == (K8S / "collector/config.yaml").read_text()
    assert cm("collector-config")["config.yaml"] == (REPO / "collector/config.yaml").read_text()
    assert cm("prometheus-config")["prometheus.yml"] == (REPO / "prometheus/prometheus.yml").read_text()
    assert cm("alertmanager-config")["alertmanager.yml"] == \
        (REPO / "alertmanager/alertmanager.yml").read_text()
    # kustomize has no globs: every rule file and template must be listed, none left out.
    rules = cm("prometheus-rules")
    assert set(rules) == {p.name for p in (REPO / "prometheus/rules").glob("*.yml")}
    for path in (REPO / "prometheus/rules").glob("*.yml"):
        assert rules[path.name] == path.read_text()
    templates = cm("alertmanager-templates")
    assert set(templates) == {p.name for p in (REPO / "alertmanager/templates").glob("*.tmpl")}
    for path in (REPO / "alertmanager/templates").glob("*.tmpl"):
        assert templates[path.name] == path.read_text()


def _mounted_file(objs: list[Obj], pod_owner: Obj, cname: str, path: str) -> str:
    """The text of the ConfigMap file mounted at ``path`` (by subPath) in container ``cname``."""
    c = container(pod_owner, cname)
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == path]
    (vol,) = [v for v in pod_owner["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    return find(objs, "ConfigMap", vol["configMap"]["name"])["data"][mount["subPath"]]


def _resolves(objs: list[Obj], target: str) -> bool:
    """host:port is a Service port, or a StatefulSet pod's name under its headless Service."""
    host, _, port = target.partition(":")
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    pod, _, svc_name = host.partition(".")
    if svc_name:
        svc = services.get(svc_name)
        sts = [o for o in objs if o["kind"] == "StatefulSet" and o["spec"]["serviceName"] == svc_name]
        if not svc or len(sts) != 1:
            return False
        name, _, ordinal = pod.rpartition("-")
        if name != sts[0]["metadata"]["name"] or not int(ordinal) < sts[0]["spec"]["replicas"]:
            return False
    else:
        svc = services.get(host)
    return svc is not None and int(port) in {p["port"] for p in svc["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_and_alertmanager_paths_match_their_configs(overlay: str) -> None:
    """The Prometheus config each overlay mounts: rule_files, targets, remote write resolve; and
    alertmanager.yml's templates and secrets are mounted."""
    objs = render(f"k8s/overlays/{overlay}")
    prom_owner = workload(objs, "prometheus")
    prom = container(prom_owner, "prometheus")
    config_file = next(a.split("=", 1)[1] for a in prom["args"] if a.startswith("--config.file="))
    mounts = {m["mountPath"] for m in prom["volumeMounts"]}
    assert config_file in mounts
    prom_cfg = yaml.safe_load(_mounted_file(objs, prom_owner, "prometheus", config_file))
    expected = "prometheus/prometheus.yml" if overlay == "dev" else "k8s/overlays/production/prometheus-ha.yml"
    assert prom_cfg == yaml.safe_load((REPO / expected).read_text())
    assert prom_cfg["rule_files"]
    for pattern in prom_cfg["rule_files"]:
        directory = str(Path(config_file).parent / Path(pattern).parent)
        assert directory in mounts, pattern
    targets = [t for job in prom_cfg.get("scrape_configs", []) for sc in job.get("static_configs", [])
               for t in sc["targets"]]
    targets += [t for am in prom_cfg.get("alerting", {}).get("alertmanagers", [])
                for sc in am.get("static_configs", []) for t in sc["targets"]]
    targets += [f"{n}:{sd['port']}" for job in prom_cfg["scrape_configs"]
                for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
    targets += [re.sub(r"^http://([^/]+)/.*", r"\1", rw["url"]) for rw in prom_cfg.get("remote_write", [])]
    assert targets
    for target in targets:
        if not target.startswith("localhost:"):
            assert _resolves(objs, target), f"{target}: no such Service port or StatefulSet pod"
    if overlay == "production":
        # every peer of the Alertmanager StatefulSet receives every alert
        (am_targets,) = [sc["targets"] for am in prom_cfg["alerting"]["alertmanagers"] for sc in am["static_configs"]]
        assert len(am_targets) == find(objs, "StatefulSet", "alertmanager")["spec"]["replicas"] == 3

    am_owner = workload(objs, "alertmanager")
    am = container(am_owner, "alertmanager")
    am_mounts = {m["mountPath"] for m in am["volumeMounts"]}
    am_cfg_text = _mounted_file(objs, am_owner, "alertmanager", "/etc/alertmanager/alertmanager.yml")
    assert am_cfg_text == (REPO / "alertmanager/alertmanager.yml").read_text()
    am_cfg = yaml.safe_load(am_cfg_text)
    for pattern in am_cfg.get("templates", []):
        assert str(Path("/etc/alertmanager") / Path(pattern).parent) in am_mounts, pattern
    for secret_file in re.findall(r"_file:\s*(/\S+)", am_cfg_text):
        assert str(Path(secret_file).parent) in am_mounts, secret_file
    for url in re.findall(r"url:\s*http://([a-z0-9-]+):(\d+)", am_cfg_text):
        assert _resolves(objs, f"{url[0]}:{url[1]}"), url
    if am_owner["kind"] == "StatefulSet":  # gossip: every peer is told of all three
        peers = [a for a in am["args"] if a.startswith("--cluster.peer=")]
        assert len(peers) == am_owner["spec"]["replicas"]
        for peer in peers:
            assert _resolves(objs, peer.split("=", 1)[1]), peer


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_the_restricted_pod_security_standard(overlay: str) -> None:
    """The namespaces enforce `restricted`: a pod that does not comply would never be created."""
    objs = render(f"k8s/overlays/{overlay}")
    assert find(objs, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == \
        "restricted"
    allowed_volumes = {"configMap", "emptyDir", "secret", "persistentVolumeClaim", "projected",
                       "downwardAPI"}
    for deploy in workloads(objs):
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
