"""Redis semantics (issue 19): MULTI vs PIPELINE, batch size only for batches, and every command's
``db.client.operation.duration`` with the connection attributes, on a real Redis server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from sizewise_otel.instruments.redis import instrument_redis, trace_redis_client
from sizewise_otel.instruments.registry import Undo
from tests.unit.test_instruments_sql import UNSAMPLED, TelemetryRig

DURATION = "db.client.operation.duration"


@pytest.fixture
def client(redis_url: str) -> Any:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def _port(redis_url: str) -> int:
    return int(redis_url.rsplit(":", 1)[1].split("/")[0])


def _durations(rig: TelemetryRig) -> dict[tuple[tuple[str, Any], ...], int]:
    return {tuple(sorted(p.attributes.items())): p.count for p in rig.metrics().get(DURATION, [])}


def test_transaction_pipeline_is_multi_and_plain_pipeline_is_pipeline(client: Any) -> None:
    rig = TelemetryRig()
    trace_redis_client(client, rig)
    client.pipeline().set("a", "1").get("a").execute()  # redis-py's default: transaction=True
    client.pipeline(transaction=False).set("a", "2").get("a").execute()
    explicit = client.pipeline(transaction=False)
    explicit.multi()
    explicit.set("a", "3").get("a").execute()
    spans = rig.finished()
    assert [(s.name, s.attributes["db.operation.name"]) for s in spans] == [
        ("MULTI", "MULTI"), ("PIPELINE", "PIPELINE"), ("MULTI", "MULTI")]
    assert all(s.attributes["db.operation.batch.size"] == 2 for s in spans)


def test_by_default_commands_outside_any_span_start_none(client: Any, redis_url: str) -> None:
    rig = TelemetryRig(roots=False)  # ALWAYS_ON, SIZEWISE_DB_ROOT_SPANS at its default (off)
    trace_redis_client(client, rig)
    client.set("k", "v")
    client.pipeline().get("k").get("k").execute()
    assert rig.finished() == []
    sampled = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(sampled)))
    try:
        client.get("k")
        client.pipeline().get("k").get("k").execute()
    finally:
        otel_context.detach(token)
    assert [(s.name, s.parent.span_id) for s in rig.finished()] == [("GET", 0xDEF), ("MULTI", 0xDEF)]
    assert sum(_durations(rig).values()) == 4  # every operation counted, spans or not


def test_one_command_pipeline_carries_no_batch_size(client: Any) -> None:
    rig = TelemetryRig()
    trace_redis_client(client, rig)
    assert client.pipeline(transaction=False).get("missing").execute() == [None]
    (span,) = rig.finished()
    assert span.name == "PIPELINE" and span.attributes["db.query.text"] == "GET ?"
    assert "db.operation.batch.size" not in span.attributes
    assert "db.redis.args_length" not in span.attributes


def test_every_command_records_the_duration_sampled_or_not(client: Any, redis_url: str) -> None:
    rig = TelemetryRig(ParentBased(ALWAYS_OFF))
    instrument_redis(client, rig, Undo())
    client.set("k", "v")  # a root the sampler drops
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(UNSAMPLED)))
    try:
        client.get("k")
        client.pipeline().get("k").get("k").execute()  # one operation
    finally:
        otel_context.detach(token)
    assert rig.finished() == []
    connection = (("db.namespace", "0"), ("db.system.name", "redis"), ("server.address", "127.0.0.1"),
                  ("server.port", _port(redis_url)))
    # One series per client, whatever the command: the metric carries no db.operation.name.
    assert {k: v for k, v in _durations(rig).items() if ("db.system.name", "redis") in k} == {connection: 3}


def test_failed_command_records_error_type_on_span_and_metric(client: Any) -> None:
    rig = TelemetryRig()
    trace_redis_client(client, rig)
    with pytest.raises(redis.ResponseError):
        client.execute_command("NOSUCHCOMMAND", "secret-arg")
    (span,) = rig.finished()
    (point,) = rig.metrics()[DURATION]
    assert span.attributes["error.type"] == point.attributes["error.type"] == "redis.exceptions.ResponseError"
    assert point.count == 1 and point.attributes["db.system.name"] == "redis"


def test_asyncio_client_records_durations_and_multi(redis_url: str) -> None:
    rig = TelemetryRig()

    async def run() -> None:
        c = redis.asyncio.Redis.from_url(redis_url)
        trace_redis_client(c, rig)
        await c.set("k", "v")
        async with c.pipeline() as pipe:
            pipe.get("k").get("k")
            assert await pipe.execute() == [b"v", b"v"]
        async with c.pipeline(transaction=False) as pipe:
            pipe.get("k")
            await pipe.execute()
        await c.aclose()

    asyncio.run(run())
    spans = rig.finished()
    assert [s.name for s in spans] == ["SET", "MULTI", "PIPELINE"]
    assert [s.attributes.get("db.operation.batch.size") for s in spans] == [None, 2, None]
    (point,) = rig.metrics()[DURATION]
    assert point.count == 3


def test_a_client_the_contrib_traces_gets_the_duration_only(client: Any) -> None:
    """Zero-code mode: the contrib's spans stay the only spans; the duration is recorded all the same."""
    rig = TelemetryRig()
    RedisInstrumentor.instrument_client(client, tracer_provider=rig.tracer_provider)
    try:
        undo = Undo()
        instrument_redis(client, rig, undo)
        client.get("k")
        spans = rig.finished()
        assert len(spans) == 1 and spans[0].instrumentation_scope.name == "opentelemetry.instrumentation.redis"
        (point,) = rig.metrics()[DURATION]
        assert point.count == 1 and "error.type" not in point.attributes
        undo.run()
        client.get("k")
        assert rig.metrics()[DURATION][0].count == 1  # unwrapped: no more measurements
    finally:
        RedisInstrumentor.uninstrument_client(client)
