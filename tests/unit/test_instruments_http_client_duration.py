"""``http.client.request.duration`` where the contrib httpx instrumentor records none (before 0.55)."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sizewise_otel.instruments import http_client
from sizewise_otel.instruments.http_client import _DurationRecorder


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(503 if self.path == "/down" else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _points(reader: InMemoryMetricReader) -> dict[tuple[tuple[str, Any], ...], int]:
    data = reader.get_metrics_data()
    return {tuple(sorted(p.attributes.items())): p.count
            for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics
            for m in sm.metrics if m.name == "http.client.request.duration" for p in m.data.data_points}


def test_sync_and_async_requests_recorded_with_stable_attributes_and_undone(server: str) -> None:
    before = (httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request)
    reader = InMemoryMetricReader()
    recorder = _DurationRecorder(MeterProvider(metric_readers=[reader]))
    recorder.install()
    try:
        with httpx.Client() as client:
            assert client.get(f"{server}/ok").status_code == 200
            assert client.get(f"{server}/down").status_code == 503

        async def call() -> int:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{server}/ok")).status_code

        assert asyncio.run(call()) == 200
        with httpx.Client() as client, pytest.raises(httpx.ConnectError):
            client.get("http://127.0.0.1:1/")
    finally:
        recorder.uninstall()
    assert (httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request) == before
    port = int(server.rsplit(":", 1)[1])
    base = {"http.request.method": "GET", "url.scheme": "http", "server.address": "127.0.0.1"}
    ok = tuple(sorted({**base, "server.port": port, "http.response.status_code": 200,
                       "network.protocol.version": "1.1"}.items()))
    down = tuple(sorted({**base, "server.port": port, "http.response.status_code": 503,
                         "network.protocol.version": "1.1", "error.type": "503"}.items()))
    refused = tuple(sorted({**base, "server.port": 1, "error.type": "ConnectError"}.items()))
    assert _points(reader) == {ok: 2, down: 1, refused: 1}


def test_used_only_where_the_contrib_records_no_duration() -> None:
    from importlib.metadata import version

    minor = int(version("opentelemetry-instrumentation-httpx").split(".")[1].split("b")[0])
    assert http_client._contrib_records_duration() == (minor >= 55)
