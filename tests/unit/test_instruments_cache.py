"""InstrumentedCache metrics and breaker, and the lean Redis CLIENT spans."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from sizewise_otel.fastpath import instrumented_by_contrib
from sizewise_otel.instrumentation import instrument_redis
from sizewise_otel.instruments.cache import InstrumentedCache
from sizewise_otel.instruments.redis import sanitized_command, trace_redis_client
from tests.unit.test_instruments_sql import UNSAMPLED, TelemetryRig


def _counts(rig: TelemetryRig) -> dict[tuple[str, str, str], int]:
    return {tuple(p.attributes[f"sizewise.cache.{k}"] for k in ("backend", "operation", "result")): p.value  # type: ignore[misc]
            for p in rig.metrics().get("sizewise.cache.operations", [])}


def _durations(rig: TelemetryRig) -> dict[tuple[str, str], int]:
    return {(p.attributes["sizewise.cache.backend"], p.attributes["sizewise.cache.operation"]): p.count
            for p in rig.metrics().get("sizewise.cache.operation.duration", [])}


def _under(span_context: SpanContext) -> Any:
    return otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span_context)))


def test_local_cache_counts_results_and_times_operations() -> None:
    rig = TelemetryRig()
    cache = InstrumentedCache(rig)
    assert cache.get("k") is None
    assert cache.set("k", b"v") is True
    assert cache.get("k") == b"v"
    assert cache.get("k") == b"v"
    assert _counts(rig) == {("local", "get", "miss"): 1, ("local", "set", "set"): 1, ("local", "get", "hit"): 2}
    assert _durations(rig) == {("local", "get"): 3, ("local", "set"): 1}
    sums = rig.metrics()["sizewise.cache.operation.duration"]
    assert all(p.sum >= 0 and len(p.bucket_counts) == len(p.explicit_bounds) + 1 for p in sums)


def test_caches_of_one_provider_add_into_one_stream() -> None:
    rig = TelemetryRig()
    first, second = InstrumentedCache(rig), InstrumentedCache(rig)
    first.get("a")
    second.get("a")
    assert _counts(rig) == {("local", "get", "miss"): 2}
    assert len(rig.metrics()["sizewise.cache.operations"]) == 1


class _Broken:
    def __init__(self) -> None:
        self.calls = 0

    def get(self, key: str) -> bytes:
        self.calls += 1
        raise redis.ConnectionError("down")

    def set(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        raise redis.ConnectionError("down")


def test_backend_failure_is_an_error_result_and_opens_the_breaker() -> None:
    rig = TelemetryRig()
    client = _Broken()
    cache = InstrumentedCache(rig, client)
    assert cache.get("k") is None and cache.bypassed
    assert cache.set("k", b"v") is False and cache.get("k") is None
    assert client.calls == 1  # the breaker kept the other two calls off the dead backend
    assert _counts(rig) == {("redis", "get", "error"): 2, ("redis", "set", "error"): 1}
    cache._open_until = 0.0  # breaker elapsed
    cache.get("k")
    assert client.calls == 2


def test_sanitized_command_never_carries_keys_or_values() -> None:
    assert sanitized_command(("SET", "user:42", "secret", "EX", 60)) == "SET ? ? ? ?"
    assert sanitized_command((b"get", "k")) == "GET ?"
    assert sanitized_command(()) == ""


@pytest.fixture
def client(redis_url: str) -> Any:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def lean(client: Any, rig: Any) -> None:
    """The lean wrapper itself (public APIs only): what ``instrument_redis`` uses on both paths."""
    trace_redis_client(client, rig)


def test_instrument_redis_takes_the_lean_wrapper_on_either_path(client: Any) -> None:
    """Both paths wrap the client themselves (the contrib's spans carry db.redis.args_length, name
    every pipeline after its commands and record no duration): one CLIENT span per command."""
    rig = TelemetryRig()
    instrument_redis(client, rig)
    assert not instrumented_by_contrib(client)
    client.set("k", "v")
    assert client.get("k") == b"v"
    spans = rig.finished()
    assert [s.name for s in spans] == ["SET", "GET"]
    assert all(s.kind is SpanKind.CLIENT for s in spans)
    assert "v" not in [a for s in spans for a in s.attributes.values()]


def test_redis_command_span_has_semconv_attributes(client: Any, redis_url: str) -> None:
    rig = TelemetryRig()
    lean(client, rig)
    cache = InstrumentedCache(rig, client)
    cache.set("user:42", b"secret-value")
    assert cache.get("user:42") == b"secret-value"
    spans = rig.finished()
    assert [s.name for s in spans] == ["SET", "GET"]
    get = dict(spans[1].attributes)
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    assert get == {"db.system.name": "redis", "db.namespace": "0", "server.address": "127.0.0.1",
                   "server.port": port, "db.operation.name": "GET",
                   "db.query.text": "GET ?"}
    assert "secret" not in repr([dict(s.attributes) for s in spans]) and "user:42" not in repr(
        [dict(s.attributes) for s in spans])
    assert _counts(rig) == {("redis", "set", "set"): 1, ("redis", "get", "hit"): 1}


def test_redis_no_span_under_an_unsampled_parent_and_roots_follow_the_sampler(client: Any) -> None:
    rig = TelemetryRig(ParentBased(ALWAYS_OFF))
    instrument_redis(client, rig)
    client.get("k")  # a root: the (always-off) root sampler drops it
    token = _under(UNSAMPLED)
    try:
        client.get("k")
    finally:
        otel_context.detach(token)
    assert rig.finished() == []
    sampled = SpanContext(0x77, 0x88, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = _under(sampled)
    try:
        client.get("k")
    finally:
        otel_context.detach(token)
    (span,) = rig.finished()
    assert span.context.trace_id == 0x77 and span.parent.span_id == 0x88


def test_redis_failure_sets_error_type(client: Any) -> None:
    rig = TelemetryRig()
    lean(client, rig)
    with pytest.raises(redis.ResponseError):
        client.execute_command("NOSUCHCOMMAND", "secret-arg")
    (span,) = rig.finished()
    assert span.attributes["error.type"] == "redis.exceptions.ResponseError"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["db.query.text"] == "NOSUCHCOMMAND ?"
    assert not span.events  # no exception message (it may quote arguments)


def test_instrumenting_a_client_twice_is_harmless(client: Any) -> None:
    rig = TelemetryRig()
    instrument_redis(client, rig)
    instrument_redis(client, rig)
    client.get("k")
    assert len(rig.finished()) == 1


def test_redis_pipeline_is_one_span(client: Any) -> None:
    rig = TelemetryRig()
    lean(client, rig)
    pipe = client.pipeline()
    pipe.set("a", "secret").get("a")
    assert pipe.execute()[1] == b"secret"
    (span,) = rig.finished()
    assert span.name == "MULTI"  # redis-py's default pipeline is a MULTI/EXEC transaction
    assert span.attributes["db.operation.name"] == "MULTI"
    assert span.attributes["db.operation.batch.size"] == 2
    assert span.attributes["db.query.text"] == "SET ? ?\nGET ?"


def test_asyncio_client_spans(redis_url: str) -> None:
    rig = TelemetryRig()

    async def run() -> tuple[Any, Any]:
        c = redis.asyncio.Redis.from_url(redis_url)
        lean(c, rig)
        lean(c, rig)
        await c.set("k", "v")
        value = await c.get("k")
        async with c.pipeline() as pipe:
            pipe.get("k").get("k")
            results = await pipe.execute()
        await c.aclose()
        return value, results

    value, results = asyncio.run(run())
    assert value == b"v" and results == [b"v", b"v"]
    assert [s.name for s in rig.finished()] == ["SET", "GET", "MULTI"]
    assert rig.finished()[1].attributes["db.query.text"] == "GET ?"
