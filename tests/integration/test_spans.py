"""Spans with semantic-convention attributes: server, database, Redis and the mesh call."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
import uvicorn

from sizewise_otel.settings import Settings
from tests.servers import free_port, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def materials_url():
    from sizewise_otel.demo.materials import create_materials_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_materials_app(), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "materials service")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_demo_spans_carry_semconv_attributes(process_telemetry, postgres_url, redis_url, materials_url) -> None:
    from sizewise_otel.demo import create_app

    exporter = process_telemetry.memory_exporter
    settings = Settings(database_url=postgres_url, redis_url=redis_url, materials_service_url=materials_url,
                        error_store_url="sqlite://", otel_traces_sampler="always_on")
    app = create_app(settings)
    body = {"calculation_type": "pressure_drop", "airflow_cfm": 1200, "diameter_in": 12, "length_ft": 100,
            "material": "galvanized_steel"}

    async def drive() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            first = await client.post("/api/hvac/calculate", json=body, headers={"traceparent": traceparent})
            second = await client.post("/api/hvac/calculate", json=body)
            return [first.status_code, second.status_code]

    exporter.clear()
    codes = asyncio.run(drive())
    assert codes[0] == 201, codes
    process_telemetry.tracer_provider.force_flush()
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind.name == "SERVER" and s.attributes.get("http.route") == "/api/hvac/calculate"]
    assert len(server) == 2
    first = min(server, key=lambda s: s.start_time)
    assert first.attributes["http.request.method"] == "POST"
    assert first.attributes["http.response.status_code"] == 201
    # W3C context propagation: the caller's trace id is continued
    assert format(first.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    # no internal receive/send spans
    assert not [s for s in spans if s.name.endswith((" http receive", " http send"))]
    trace_spans = [s for s in spans if s.context.trace_id == first.context.trace_id]
    db = [s for s in trace_spans if s.attributes.get("db.system.name") == "postgresql"
          or s.attributes.get("db.system") == "postgresql"]
    assert db, [s.name for s in trace_spans]
    redis_spans = [s for s in trace_spans if "redis" in str(s.attributes.get("db.system.name",
                                                                                s.attributes.get("db.system")))]
    assert redis_spans, [s.name for s in trace_spans]
    client = [s for s in trace_spans if s.kind.name == "CLIENT" and "http.request.method" in s.attributes]
    assert client and client[0].attributes.get("server.address") == "127.0.0.1"
    # the materials service continued the same trace (the mesh)
    mesh = [s for s in spans if s.kind.name == "SERVER" and s.context.trace_id == first.context.trace_id
            and s is not first]
    assert mesh, "the materials call should propagate the trace"
