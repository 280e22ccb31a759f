"""Real servers running an app built by a factory: ``uvicorn --factory`` and ``gunicorn --preload`` with
two UvicornWorkers (the app instrumented once in the master, then forked).

The preload proof is what each process pushes over OTLP/HTTP to a receiver in this test: both workers
export under their own ``service.instance.id``, neither the master's, and their spans carry it too.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.apprunner import run_demo, stop
from tests.servers import ROOT, clean_env, free_port, need, tempdir, wait_for
from tests.tools import venv_tool

APP = "tests.integration.preload_app"
INSTANCE = "service.instance.id"


class OtlpReceiver:
    """An OTLP/HTTP (protobuf) endpoint keeping, per ``service.instance.id``, the metric and span names."""

    def __init__(self) -> None:
        self.metrics: dict[str, set[str]] = {}
        self.spans: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path == "/v1/metrics":
                    receiver._metrics(ExportMetricsServiceRequest.FromString(body))
                    out = ExportMetricsServiceResponse().SerializeToString()
                else:
                    receiver._spans(ExportTraceServiceRequest.FromString(body))
                    out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @staticmethod
    def _instance(resource: object) -> str:
        return next((kv.value.string_value for kv in resource.attributes if kv.key == INSTANCE), "")  # type: ignore[attr-defined]

    def _metrics(self, request: ExportMetricsServiceRequest) -> None:
        with self._lock:
            for rm in request.resource_metrics:
                names = self.metrics.setdefault(self._instance(rm.resource), set())
                names.update(m.name for sm in rm.scope_metrics for m in sm.metrics)

    def _spans(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            for rs in request.resource_spans:
                self.spans.setdefault(self._instance(rs.resource), []).extend(
                    s.name for ss in rs.scope_spans for s in ss.spans)

    def snapshot(self) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
        with self._lock:
            return {k: set(v) for k, v in self.metrics.items()}, {k: list(v) for k, v in self.spans.items()}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def identities(folder: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workdir: Path) -> Iterator[str]:
    binary = need(venv_tool("gunicorn"), "gunicorn (the [server] extra)")
    log = workdir / "gunicorn.log"
    for attempt in range(3):  # another process may take the port between free_port() and the bind
        port = free_port()
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                [binary, "--preload", "--workers", "2", "--worker-class", "uvicorn.workers.UvicornWorker",
                 "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5", f"{APP}:create_app()"],
                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)

        def workers_up(proc: subprocess.Popen = proc) -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({proc.returncode})")
            return len(list(workdir.glob("worker-*.json"))) == 2

        try:
            wait_for(workers_up, 90, "both gunicorn workers through their lifespan")
            break
        except Exception:
            stop(proc)
            if attempt == 2 or b"address already in use" not in log.read_bytes().lower():
                raise AssertionError(log.read_text()[-4000:]) from None
            for stale in workdir.glob("*.json"):
                stale.unlink()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_gunicorn_preload_workers_export_under_their_own_instance_ids() -> None:
    receiver = OtlpReceiver()
    workdir = tempdir("preload")
    env = clean_env({"SHAPES_IDENTITY_DIR": str(workdir), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                     "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_METRIC_EXPORT_INTERVAL": "500",
                     "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_TRACES_SAMPLER": "always_on",
                     "ERROR_STORE_URL": f"sqlite:///{workdir / 'errors.db'}"})
    try:
        with gunicorn(env, workdir) as url:
            seen = identities(workdir)
            master = [i for i in seen if i["role"] == "factory"]
            workers = {str(i["instance"]): i["pid"] for i in seen if i["role"] == "worker"}
            assert len(master) == 1 and len(workers) == 2, seen  # two distinct ids, one per worker
            assert master[0]["instance"] not in workers and master[0]["pid"] not in workers.values(), seen
            for n in range(10):  # fresh connections: the workers share the listening socket
                assert httpx.get(f"{url}/work/{n}", timeout=10).json()["n"] == n

            def exported() -> bool:
                metrics, spans = receiver.snapshot()
                return all("sizewise.error.rate" in metrics.get(i, ()) for i in workers) and bool(spans)

            wait_for(exported, 30, "both workers' metrics and some spans at the OTLP receiver")
            metrics, spans = receiver.snapshot()
            assert set(workers) <= set(metrics)
            assert set(spans) <= set(workers), (spans.keys(), workers)  # spans only from workers, under theirs
            assert sum(names.count("GET /work/{n}") for names in spans.values()) >= 1
    finally:
        receiver.stop()


def test_uvicorn_factory() -> None:
    workdir = tempdir("factory")
    uvicorn = need(venv_tool("uvicorn"), "uvicorn (the [server] extra)")
    cmd = [uvicorn, "--factory", f"{APP}:create_app", "--host", "127.0.0.1", "--port", "{port}",
           "--app-dir", str(ROOT)]
    with run_demo(env={"SHAPES_IDENTITY_DIR": str(workdir)}, cmd=cmd) as app:
        for n in range(3):
            assert httpx.get(f"{app.url}/work/{n}", timeout=10).json()["n"] == n
        counts = [v for name, labels, v in app.samples()
                  if name == "http_server_request_duration_seconds_count" and labels.get("http_route") == "/work/{n}"]
        assert counts == [3.0]
        roles = {(i["role"], i["pid"]) for i in identities(workdir)}
        assert roles == {("factory", app.proc.pid), ("worker", app.proc.pid)}  # built once, in the server
