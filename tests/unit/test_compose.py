"""compose.yaml: valid against the compose-spec schema, every mount present, the service graph as
documented, and the configs it mounts are the ones the integration tests execute (tests/stack.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests import ha, stack
from tests.tools import venv_tool

SERVICES = {"app", "materials", "postgres", "redis", "otel-collector", "prometheus", "alertmanager",
            "grafana", "jaeger"}
# The collector images are distroless (no shell, no wget): the services without a healthcheck.
NO_HEALTHCHECK = {"otel-collector", "otel-agent", "otel-gateway-1", "otel-gateway-2"}
STATEFUL = {"postgres": "/var/lib/postgresql/data", "redis": "/data", "prometheus": "/prometheus",
            "alertmanager": "/alertmanager", "grafana": "/var/lib/grafana",
            "prometheus-a": "/prometheus", "prometheus-b": "/prometheus", "alertmanager-1": "/alertmanager",
            "alertmanager-2": "/alertmanager", "alertmanager-3": "/alertmanager",
            "victoriametrics": "/storage", "grafana-ha": "/var/lib/grafana"}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return stack.compose()


def _default(value: str) -> str:
    """A compose string with ${VAR:-default} resolved to its default (what a plain `up` uses)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def _binds(service: dict) -> list[tuple[str, str]]:
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def _named_volumes(service: dict) -> list[tuple[str, str]]:
    out = []
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":") if isinstance(volume, str) else (volume["source"], "", "")
        if source and not source.startswith((".", "/")):
            out.append((source, rest.split(":")[0]))
    return out


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    binary = venv_tool("check-jsonschema")
    assert binary, "check-jsonschema is a test dependency (pip install .[test])"
    result = subprocess.run([binary, "--builtin-schema", "vendor.compose-spec", str(stack.COMPOSE)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_service_graph(compose: dict) -> None:
    services = compose["services"]
    assert {n for n, s in services.items() if "profiles" not in s} == SERVICES
    assert {n for n, s in services.items() if s.get("profiles") == ["ha"]} == ha.HA_SERVICES
    assert set(services) == SERVICES | ha.HA_SERVICES
    for name, service in services.items():
        if name not in NO_HEALTHCHECK:
            assert "healthcheck" in service, f"{name} has no healthcheck"
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            assert isinstance(spec, dict) and spec.get("condition"), f"{name} -> {dep}: no condition"
            wanted = "service_started" if dep in NO_HEALTHCHECK else "service_healthy"
            assert spec["condition"] == wanted, (name, dep, spec)
    deps = {name: set(s.get("depends_on") or {}) for name, s in services.items()}
    assert deps["app"] == {"postgres", "redis", "otel-collector", "materials"}
    assert deps["otel-collector"] == {"jaeger"}
    assert {"otel-collector", "alertmanager"} <= deps["prometheus"]
    assert {"prometheus", "jaeger"} <= deps["grafana"]


def test_images_are_pinned(compose: dict) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.match(r"v?\d+\.\d+", tag), f"{name}: {image} has a floating tag"


def test_collector_image_matches_the_builder_manifest(compose: dict) -> None:
    image = compose["services"]["otel-collector"]["image"]
    assert image.startswith("otel/opentelemetry-collector-contrib:")
    image_version = image.rsplit(":", 1)[1]
    manifest = stack.load_yaml("collector/builder-config.yaml")
    modules = [m["gomod"] for kind in ("receivers", "processors", "exporters", "extensions")
               for m in manifest[kind]]
    core = {m.split()[1] for m in modules if m.startswith("go.opentelemetry.io/collector/")}
    contrib = {m.split()[1] for m in modules if "opentelemetry-collector-contrib" in m}
    assert contrib == {f"v{image_version}"}, (image_version, contrib)
    major_minor = ".".join(image_version.split(".")[:2])
    assert core == {f"v{major_minor}.0"}, core  # contrib x.y.z is built on core x.y.0
    assert manifest["dist"]["version"] == image_version


def test_every_bind_mount_and_secret_file_exists(compose: dict) -> None:
    missing = []
    for name, service in compose["services"].items():
        for source, target in _binds(service):
            if not (stack.ROOT / _default(source)).exists():
                missing.append(f"{name}: {source} -> {target}")
    for name, secret in compose.get("secrets", {}).items():
        assert "file" in secret, f"secret {name} must come from a file"
        if not (stack.ROOT / _default(secret["file"])).exists():
            missing.append(f"secret {name}: {secret['file']}")
    assert not missing, "mounted paths missing:\n" + "\n".join(missing)


def test_named_volumes_for_state(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _ in _named_volumes(service):
            assert source in declared, f"{name}: volume {source} not declared"
    for name, path in STATEFUL.items():
        assert path in [t for _, t in _named_volumes(compose["services"][name])], (name, path)


def test_no_inline_secrets(compose: dict) -> None:
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|WEBHOOK", re.I)
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if sensitive.search(key):
                assert key.endswith(("_FILE", "__FILE")), f"{name}: {key} set inline"
                assert str(value).startswith(("/run/secrets/", "/etc/")), (name, key, value)
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            assert source in compose["secrets"], (name, source)
    # The image context is an allow-list that never lets secrets/ (or .git, build/) in.
    ignore = (stack.ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*"):] and not any(line.startswith("!secrets") for line in ignore)


def test_compose_mounts_the_configs_the_integration_tests_run(compose: dict) -> None:
    for mounted in stack.EXECUTED:
        binds = _binds(compose["services"][mounted.service])
        assert (f"./{mounted.path}", mounted.target) in binds, (mounted, binds)
    collector = compose["services"]["otel-collector"]
    assert f"--config={stack.COLLECTOR_CONFIG.target}" in collector["command"]
    prometheus = compose["services"]["prometheus"]["command"]
    assert f"--config.file={stack.PROMETHEUS_CONFIG.target}" in prometheus
    assert "--storage.tsdb.retention.time=7d" in prometheus
    assert "--enable-feature=exemplar-storage" in prometheus
    # Rules: prometheus.yml's relative glob resolves inside the mounted rules directory.
    prom_yml = stack.load_yaml(stack.PROMETHEUS_CONFIG.path)
    config_dir = Path(stack.PROMETHEUS_CONFIG.target).parent
    for pattern in prom_yml["rule_files"]:
        assert str(Path(config_dir, pattern).parent) == stack.PROMETHEUS_RULES.target


def test_addresses_in_the_configs_are_compose_services(compose: dict) -> None:
    services = compose["services"]
    prom_yml = stack.load_yaml(stack.PROMETHEUS_CONFIG.path)
    targets = [t for job in prom_yml["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]]
    targets += [t for am in prom_yml["alerting"]["alertmanagers"] for sc in am["static_configs"]
                for t in sc["targets"]]
    assert "alertmanager:9093" in targets
    for target in targets:
        host = target.split(":")[0]
        assert host == "localhost" or host in services, target
    collector_env = services["otel-collector"]["environment"]
    assert collector_env["TRACES_OTLP_ENDPOINT"].split(":")[0] == "jaeger"
    app_env = services["app"]["environment"]
    # The collector by default; SIZEWISE_OTLP_ENDPOINT points the app at the HA agent (profile ha).
    assert app_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${SIZEWISE_OTLP_ENDPOINT:-http://otel-collector:4318}"
    assert "otel-agent" in services and "otel-collector" in services
    assert app_env["MATERIALS_SERVICE_URL"].split("//")[1].split(":")[0] == "materials"
    # The collector job keeps the exporter's job/instance labels (one instance per worker).
    job = next(j for j in prom_yml["scrape_configs"] if j["job_name"] == "otel-collector")
    assert job["honor_labels"] is True
    assert job["static_configs"][0]["targets"] == ["otel-collector:8889"]


def test_grafana_and_alertmanager_files_match_their_mounts(compose: dict) -> None:
    services = compose["services"]
    grafana_binds = dict(_binds(services["grafana"]))
    assert grafana_binds["./grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards_target = grafana_binds["./grafana/dashboards"]
    for provider_file in (stack.ROOT / "grafana/provisioning/dashboards").glob("*.y*ml"):
        for provider in stack.load_yaml(provider_file).get("providers", []):
            assert provider["options"]["path"] == dashboards_target, provider_file
    urls = []
    for ds_file in (stack.ROOT / "grafana/provisioning/datasources").glob("*.y*ml"):
        urls += [ds["url"] for ds in stack.load_yaml(ds_file).get("datasources", [])]
    assert "http://prometheus:9090" in urls and "http://jaeger:16686" in urls, urls
    for url in urls:
        assert url.split("//")[1].split(":")[0] in services, url

    # Alertmanager reads the Slack webhook URL (and the relay key) from the files compose mounts
    # the secrets at: the long syntax's target, or /run/secrets/<name> for the short one.
    am_text = (stack.ROOT / "alertmanager/alertmanager.yml").read_text()
    secret_targets = {
        (s.get("target") or f"/run/secrets/{s['source']}") if isinstance(s, dict) else f"/run/secrets/{s}"
        for s in services["alertmanager"]["secrets"]
    }
    url_files = set(re.findall(r"(?:api_url_file|credentials_file|url_file):\s*['\"]?([^\s'\"]+)", am_text))
    assert url_files, "alertmanager.yml reads no webhook URL from a file"
    assert url_files <= secret_targets, (url_files, secret_targets)


def test_dockerfile_runs_the_demo_as_documented() -> None:
    text = (stack.ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[\w.-]*-slim", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert 'pip install ".[demo]"' in text
    cmd = json.loads(next(ln for ln in text.replace("\\\n", " ").splitlines() if ln.startswith("CMD "))[4:])
    assert cmd[:5] == ["gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2"]
    assert cmd[-1] == "sizewise_otel.demo:app"


def test_exemplars_link_to_the_trace_datasource() -> None:
    """The collector's exporter labels exemplars `trace_id`; Grafana must link that label to Jaeger."""
    collector = stack.load_yaml(stack.COLLECTOR_CONFIG.path)
    assert collector["exporters"]["prometheus"]["enable_open_metrics"] is True
    datasources = []
    for ds_file in (stack.ROOT / "grafana/provisioning/datasources").glob("*.y*ml"):
        datasources += stack.load_yaml(ds_file).get("datasources", [])
    uids = {ds.get("uid"): ds for ds in datasources}
    prometheus = next(ds for ds in datasources if ds["type"] == "prometheus")
    links = prometheus.get("jsonData", {}).get("exemplarTraceIdDestinations", [])
    assert any(link["name"] == "trace_id" and uids.get(link.get("datasourceUid"), {}).get("type") == "jaeger"
               for link in links), links


def test_ha_profile_mounts_only_files_the_ha_tests_run(compose: dict) -> None:
    for name in ha.HA_SERVICES:
        for source, _ in _binds(compose["services"][name]):
            assert source.removeprefix("./") in ha.HA_EXECUTED, (name, source)
    # one volume per stateful peer: replicas never share a TSDB, an nflog or a data directory
    volumes = [v for n in ha.HA_SERVICES for v, _ in _named_volumes(compose["services"][n])]
    assert len(volumes) == len(set(volumes)) == 7


def test_ha_addresses_are_ha_services_and_peers_know_each_other(compose: dict) -> None:
    services = compose["services"]
    prom = stack.load_yaml(ha.PROMETHEUS_HA)
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    targets += prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    targets += stack.load_yaml("collector/ha/agent.yaml")["exporters"]["loadbalancing"]["resolver"][
        "static"]["hostnames"]
    for target in targets:
        host = target.split(":")[0]
        assert host == "localhost" or host in ha.HA_SERVICES, target
    assert prom["remote_write"][0]["url"] == "http://victoriametrics:8428/api/v1/write"
    peers = {f"--cluster.peer={n}:9094" for n in services if n.startswith("alertmanager-")}
    for name in ("alertmanager-1", "alertmanager-2", "alertmanager-3"):
        assert peers <= set(services[name]["command"]), name
    assert {services[n]["environment"]["PROMETHEUS_REPLICA"] for n in ("prometheus-a", "prometheus-b")} == {"a", "b"}
    # The HA Grafana reads VictoriaMetrics under the uid the dashboards default to.
    [vm] = [d for d in stack.load_yaml("grafana/provisioning/datasources/ha/victoriametrics.yaml")["datasources"]
            if d["type"] == "prometheus"]
    assert vm["url"] == "http://victoriametrics:8428" and vm["uid"] == "sizewise-prometheus"
    assert "-httpListenAddr=:8428" in services["victoriametrics"]["command"]
