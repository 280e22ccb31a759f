"""The standard OTel settings in instrument() mode, on the fast path and the public path (SIZEWISE_FASTPATH=0).

Each scenario runs one instrumented FastAPI app in a fresh process (the providers are built once per
process, from the environment), with an in-memory span exporter and metric reader beside the app's own
/metrics, and prints what it saw as JSON; the tests assert on that. One run serves several tests.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

from sizewise_otel.instruments.request import header_capture
from sizewise_otel.settings import Settings, SettingsError
from sizewise_otel.telemetry import build_exemplar_filter, build_sampler
from tests.servers import ROOT, clean_env

ROOTS, SAMPLED_PARENTS, UNSAMPLED_PARENTS = 20, 5, 5
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e47{:02x}"

SCRIPT = textwrap.dedent('''
    import json, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx
    from fastapi import FastAPI, Response
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from starlette.testclient import TestClient

    from sizewise_otel import instrument
    from sizewise_otel.settings import load_settings
    from sizewise_otel.telemetry import configure_telemetry

    ROOTS, SAMPLED, UNSAMPLED, TRACE_ID = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])

    class Peer(BaseHTTPRequestHandler):  # the service's HTTP dependency, on loopback
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    peer = ThreadingHTTPServer(("127.0.0.1", 0), Peer)
    threading.Thread(target=peer.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{peer.server_address[1]}"

    app = FastAPI()

    @app.get("/api/{n}")
    def api(n: int, response: Response) -> dict:
        response.headers["X-Served-By"] = "hvac-1"
        response.headers["X-Backend-Host"] = "db-7"
        return {"n": n}

    @app.get("/calls")
    async def calls() -> dict:
        async with httpx.AsyncClient() as client:
            codes = [(await client.get(f"{base}/keep/1")).status_code, (await client.get(f"{base}/skip/1")).status_code]
        with httpx.Client() as client:
            codes += [client.get(f"{base}/keep/2").status_code, client.get(f"{base}/skip/2").status_code]
        return {"codes": codes}

    # The code's own choices; the environment must win over them.
    settings = load_settings(error_store_url="sqlite://", otel_service_name="name-from-code",
                             cpu_warning_percent=100, cpu_critical_percent=100, memory_warning_percent=100,
                             memory_critical_percent=100, disk_warning_percent=100, disk_critical_percent=100)
    reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    configure_telemetry(settings, readers=[reader], span_exporters=[exporter])
    handle = instrument(app, settings=settings)
    headers = [("X-Tenant", "north"), ("X-Tenant", "south"), ("X-Internal-Route", "blue"),
               ("Authorization", "Bearer t-456"), ("X-Other", "not captured")]
    codes = {}
    with TestClient(app) as http:
        for n in range(ROOTS):
            codes.setdefault("api", set()).add(http.get(f"/api/{n}", headers=headers).status_code)
        for n in range(SAMPLED + UNSAMPLED):
            flags = "01" if n < SAMPLED else "00"
            parent = {"traceparent": f"00-{TRACE_ID.format(n)}-00f067aa0ba902b7-{flags}"}
            codes["api"].add(http.get(f"/api/{ROOTS + n}", headers=parent).status_code)
        calls = http.get("/calls")
        codes["calls"] = {calls.status_code}
        codes["peer"] = set(calls.json()["codes"])
        codes["health"] = {http.get("/health").status_code}
        scrape = http.get("/metrics")
        codes["metrics"] = {scrape.status_code}
    handle.telemetry.tracer_provider.force_flush()

    spans = [{"name": s.name, "kind": s.kind.name, "trace_id": f"{s.context.trace_id:032x}",
              "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in s.attributes.items()}}
             for s in exporter.get_finished_spans()]
    exemplars = None
    data = reader.get_metrics_data()
    if data is not None:
        exemplars = [f"{e.trace_id or 0:032x}" for rm in data.resource_metrics for sm in rm.scope_metrics
                     for m in sm.metrics if m.name == "http.server.request.duration"
                     for p in m.data.data_points for e in p.exemplars]
    print(json.dumps({"codes": {k: sorted(v) for k, v in codes.items()}, "spans": spans, "exemplars": exemplars,
                      "metrics": scrape.text.splitlines(), "threads": [t.name for t in threading.enumerate()]}))
''')

# Names are regexes matched in full and case-insensitively; sanitize fields are searched for in the name.
CAPTURE = {
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "X-Tenant, x-internal-.*,authorization",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "x-served-by,X-Backend-.*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "X-INTERNAL,backend",
}
SCENARIOS: dict[str, dict[str, str]] = {
    # Everything that can share one process, with a sampler and an exemplar filter unlike the defaults.
    "standard": {**CAPTURE, "OTEL_PYTHON_HTTPX_EXCLUDED_URLS": "/skip/", "OTEL_SERVICE_NAME": "calc-svc",
                 "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes,team=hvac",
                 "OTEL_TRACES_SAMPLER": "always_on", "OTEL_METRICS_EXEMPLAR_FILTER": "always_off"},
    "always_off": {"OTEL_TRACES_SAMPLER": "always_off", "OTEL_METRICS_EXEMPLAR_FILTER": "ALWAYS_ON"},
    "parentbased_always_off": {"OTEL_TRACES_SAMPLER": "parentbased_always_off"},
    "unknown_sampler": {"OTEL_TRACES_SAMPLER": "bogus_sampler", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
    # An OTLP endpoint that would start the exporters' threads (nothing listens on the discard port).
    "disabled": {**CAPTURE, "OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
}
NO_RESOURCE_ALARMS = {f"{r}_{level}_PERCENT": "100" for r in ("CPU", "MEMORY", "DISK")
                      for level in ("WARNING", "CRITICAL")}
PATHS = pytest.mark.parametrize("fastpath", ["1", "0"], ids=["fast", "public"])


@functools.cache
def run(scenario: str, fastpath: str) -> tuple[dict[str, Any], str]:
    # Health thresholds out of reach: a loaded 2-core machine must not turn /health into a 503 here.
    env = clean_env({**SCENARIOS[scenario], "SIZEWISE_FASTPATH": fastpath, **NO_RESOURCE_ALARMS})
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOTS), str(SAMPLED_PARENTS), str(UNSAMPLED_PARENTS),
                          TRACE_ID], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # /health is served in every scenario (a saturated CPU warns, it does not fail).
    assert dict(report["codes"]) == {"api": [200], "calls": [200], "peer": [200], "metrics": [200],
                                     "health": [200]}
    return report, out.stderr


def api_spans(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in report["spans"] if s["kind"] == "SERVER" and s["attributes"].get("http.route") == "/api/{n}"]


def parent_trace(n: int) -> str:
    return TRACE_ID.format(n)


def metric_lines(report: dict[str, Any], name: str) -> list[str]:
    return [line for line in report["metrics"] if line.startswith(name)]


@PATHS
def test_captured_headers_are_span_attributes_sanitized_as_the_contrib_does(fastpath: str) -> None:
    report, _ = run("standard", fastpath)
    spans = api_spans(report)
    assert len(spans) == ROOTS + SAMPLED_PARENTS + UNSAMPLED_PARENTS
    captured = {k: v for k, v in spans[0]["attributes"].items() if k.startswith(("http.request.header.",
                                                                                  "http.response.header."))}
    assert captured == {
        "http.request.header.x_tenant": ["north", "south"],
        "http.request.header.x_internal_route": ["[REDACTED]"],
        # Not a sanitize field, but a secret by name: the error tracker's span scrubber filters it on export.
        "http.request.header.authorization": ["[Filtered]"],
        "http.response.header.x_served_by": ["hvac-1"],
        "http.response.header.x_backend_host": ["[REDACTED]"],
    }


@PATHS
def test_httpx_excluded_urls_get_no_span_and_no_duration(fastpath: str) -> None:
    report, _ = run("standard", fastpath)
    client_urls = sorted(s["attributes"].get("url.full", s["attributes"].get("http.url", ""))
                         for s in report["spans"] if s["kind"] == "CLIENT")
    assert [url.split("/", 3)[3] for url in client_urls] == ["keep/1", "keep/2"]
    counts = [float(line.rsplit(" ", 1)[1])
              for line in metric_lines(report, "http_client_request_duration_seconds_count")]
    assert sum(counts) == 2.0


@PATHS
def test_otel_service_name_wins_over_the_code_and_the_resource_attributes(fastpath: str) -> None:
    report, _ = run("standard", fastpath)
    (target_info,) = metric_lines(report, "target_info")
    assert 'service_name="calc-svc"' in target_info and 'team="hvac"' in target_info


@PATHS
def test_the_users_sampler_wins_over_the_default_ratio(fastpath: str) -> None:
    report, _ = run("standard", fastpath)  # always_on: every request, where the default keeps ~10 % of roots
    assert len(api_spans(report)) == ROOTS + SAMPLED_PARENTS + UNSAMPLED_PARENTS
    report, _ = run("always_off", fastpath)
    assert report["spans"] == []


@PATHS
def test_parent_based_sampler_follows_the_parent(fastpath: str) -> None:
    report, _ = run("parentbased_always_off", fastpath)
    traces = sorted(s["trace_id"] for s in api_spans(report))
    assert traces == [parent_trace(n) for n in range(SAMPLED_PARENTS)]


@PATHS
def test_exemplar_filter_always_off_and_always_on(fastpath: str) -> None:
    report, _ = run("standard", fastpath)  # every request sampled, yet no exemplar
    assert report["exemplars"] == []
    report, _ = run("always_off", fastpath)  # no request sampled, yet exemplars
    assert report["spans"] == [] and len(report["exemplars"]) >= 1


@PATHS
def test_trace_based_exemplars_point_at_sampled_spans_only(fastpath: str) -> None:
    report, _ = run("parentbased_always_off", fastpath)  # the default filter: trace_based
    sampled = {parent_trace(n) for n in range(SAMPLED_PARENTS)}
    assert report["exemplars"] and set(report["exemplars"]) <= sampled


@PATHS
def test_an_unknown_sampler_gets_the_sdks_default_and_one_warning(fastpath: str) -> None:
    report, stderr = run("unknown_sampler", fastpath)
    # (On the fast path the SDK's own "Couldn't recognize sampler" line comes from the fast path's feature probe.)
    assert [line for line in stderr.splitlines() if line.startswith("OTEL_TRACES_SAMPLER=")] == [
        "OTEL_TRACES_SAMPLER=bogus_sampler: no such sampler (not an SDK name, no opentelemetry_traces_sampler "
        "entry point); using parentbased_always_on, as the OpenTelemetry SDK does"]
    # parentbased_always_on: every root and every sampled parent, no unsampled parent.
    traces = {s["trace_id"] for s in api_spans(report)}
    assert len(traces) == ROOTS + SAMPLED_PARENTS
    assert {parent_trace(n) for n in range(SAMPLED_PARENTS)} <= traces
    assert not {parent_trace(SAMPLED_PARENTS + n) for n in range(UNSAMPLED_PARENTS)} & traces


@PATHS
def test_sdk_disabled_records_nothing_and_serves_the_app(fastpath: str) -> None:
    report, stderr = run("disabled", fastpath)  # the app's route and /metrics answered 200, /health was served
    assert report["spans"] == [] and report["exemplars"] is None
    assert [t for t in report["threads"] if t.startswith("Otel")] == []
    ours = [line for line in report["metrics"] if not line.startswith("#")
            and line.startswith(("target_info", "http_", "sizewise_", "db_", "process_cpu_utilization"))]
    assert ours == []
    assert len([line for line in stderr.splitlines() if line.startswith("OTEL_SDK_DISABLED=true")]) == 1


# --- in-process: the parsing behind the scenarios ------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("always_on", ALWAYS_ON), ("ALWAYS_OFF", ALWAYS_OFF), ("parentbased_always_on", ParentBased(ALWAYS_ON)),
    ("parentbased_always_off", ParentBased(ALWAYS_OFF)), ("traceidratio", TraceIdRatioBased(0.25)),
    ("parentbased_traceidratio", ParentBased(TraceIdRatioBased(0.25))),
])
def test_every_sdk_sampler_name(name: str, expected: Any) -> None:
    sampler = build_sampler(Settings(otel_traces_sampler=name, otel_traces_sampler_arg=0.25))
    assert type(sampler) is type(expected) and sampler.get_description() == expected.get_description()


def test_a_ratio_sampler_with_a_bad_argument_warns_and_uses_the_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="sizewise.telemetry"):
        sampler = build_sampler(Settings(otel_traces_sampler="parentbased_traceidratio", otel_traces_sampler_arg="x"))
        build_sampler(Settings(otel_traces_sampler="always_on", otel_traces_sampler_arg="x"))  # no ratio read
    assert sampler.get_description() == ParentBased(TraceIdRatioBased(0.1)).get_description()
    assert [r.getMessage() for r in caplog.records] == [
        "OTEL_TRACES_SAMPLER_ARG='x' is not a ratio between 0 and 1; using 0.1"]


def test_an_entry_point_sampler_gets_the_argument_text(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ``opentelemetry_traces_sampler`` entry point (a distribution on sys.path) receives the
    text as given, and None when it is unset, as from the SDK's configurator."""
    (tmp_path / "sw_sampler_probe.py").write_text(textwrap.dedent("""
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON
        received = []
        def factory(arg):
            received.append(arg)
            return ALWAYS_ON
    """))
    info = tmp_path / "sw_sampler_probe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sw-sampler-probe\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[opentelemetry_traces_sampler]\nsw_probe = sw_sampler_probe:factory\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import sw_sampler_probe  # type: ignore[import-not-found]

    assert build_sampler(Settings(otel_traces_sampler="sw_probe", otel_traces_sampler_arg="tenant=a;rate=3")) \
        is ALWAYS_ON
    monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
    build_sampler(Settings(otel_traces_sampler="sw_probe"))
    assert sw_sampler_probe.received == ["tenant=a;rate=3", None]


def test_an_unknown_sampler_name_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="sizewise.telemetry"):
        sampler = build_sampler(Settings(otel_traces_sampler="nope"))
    assert sampler.get_description() == ParentBased(ALWAYS_ON).get_description()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["OTEL_TRACES_SAMPLER=nope"]


@pytest.mark.parametrize(("raw", "expected"), [
    (None, TraceBasedExemplarFilter), ("always_on", AlwaysOnExemplarFilter), (" Always_Off ", AlwaysOffExemplarFilter),
])
def test_exemplar_filter_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str | None,
                                              expected: type) -> None:
    if raw is None:
        monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
    else:
        monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", raw)
    assert type(build_exemplar_filter()) is expected


def test_an_unknown_exemplar_filter_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "sometimes")
    with pytest.raises(SettingsError, match=r"OTEL_METRICS_EXEMPLAR_FILTER: expected one of .*'sometimes'"):
        build_exemplar_filter()


def test_no_capture_variable_no_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CAPTURE:
        monkeypatch.delenv(name, raising=False)
    assert header_capture() is None
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE", "etag")
    capture = header_capture()
    assert capture is not None
    span = TracerProvider(sampler=ALWAYS_ON).get_tracer("t").start_span("s")
    assert capture.attributes([(b"etag", b"v1"), (b"x", b"y")], capture.response, str.upper) == {"ETAG": ["v1"]}
    assert capture.attributes([(b"etag", b"v1")], capture.request, str.upper) == {}
    span.end()
