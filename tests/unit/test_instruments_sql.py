"""The SQLAlchemy layer: CLIENT spans only when sampled, semconv attributes, the duration metric."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from sizewise_otel.catalog import Kind, signal
from sizewise_otel.fastpath import SpanGate
from sizewise_otel.instruments.sql import _SYSTEMS, instrument_engine, sanitize_sql, span_name
from sizewise_otel.settings import Settings
from sizewise_otel.telemetry import SCOPE, build_views


class TelemetryRig:
    """What the instrumentation needs from ``Telemetry``, on private providers kept in memory."""

    def __init__(self, sampler: Sampler = ALWAYS_ON, *, roots: bool = True) -> None:
        # Most tests run statements outside any span and look at the span: root spans on
        # (SIZEWISE_DB_ROOT_SPANS); the default's own tests pass roots=False.
        self.settings = Settings(sizewise_db_root_spans=roots)
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(sampler=sampler)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], views=build_views())
        self.meter = self.meter_provider.get_meter(SCOPE, self.settings.service_version)
        self._instruments: dict[str, Any] = {}
        self.observed: list[str] = []
        self.callbacks: dict[str, Any] = {}

    def instrument(self, name: str) -> Any:
        if name not in self._instruments:
            sig = signal(name)
            factory = {Kind.COUNTER: self.meter.create_counter,
                       Kind.HISTOGRAM: self.meter.create_histogram}[sig.kind]
            self._instruments[name] = factory(name, unit=sig.unit, description=sig.description)
        return self._instruments[name]

    def observe(self, name: str, callback: Any) -> None:
        self.observed.append(name)
        self.callbacks.setdefault(name, callback)

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> data points (one collection)."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def finished(self, kind: SpanKind = SpanKind.CLIENT) -> list[Any]:
        return [s for s in self.spans.get_finished_spans() if s.kind is kind]


def _under(span_context: SpanContext) -> Any:
    return otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span_context)))


UNSAMPLED = SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(TraceFlags.DEFAULT))


@pytest.fixture
def sqlite_engine(tmp_path: Any) -> Any:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    yield engine
    engine.dispose()


def test_sampled_statement_is_one_client_span_with_semconv_attributes(sqlite_engine: Any, tmp_path: Any) -> None:
    rig = TelemetryRig()
    instrument_engine(sqlite_engine, rig)
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    (span,) = rig.finished()
    attrs = dict(span.attributes)
    assert attrs["db.system.name"] == "sqlite"
    assert "db.operation.name" not in attrs  # semconv: SHOULD NOT be parsed from the query text
    assert "db.query.summary" not in attrs
    assert attrs["db.namespace"] == str(tmp_path / "app.db")
    assert attrs["db.query.text"] == "SELECT ?"
    assert span.name == str(tmp_path / "app.db")  # {db.namespace}: the target, no invented operation
    assert span.status.status_code is StatusCode.UNSET
    (point,) = rig.metrics()["db.client.operation.duration"]
    assert point.count == 1
    assert dict(point.attributes) == {"db.system.name": "sqlite", "db.namespace": str(tmp_path / "app.db")}
    assert {"db.client.connection.count", "db.client.connection.max"} <= set(rig.observed)


def test_span_is_a_child_of_the_current_sampled_span(sqlite_engine: Any) -> None:
    rig = TelemetryRig(ParentBased(ALWAYS_OFF))
    instrument_engine(sqlite_engine, rig)
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = _under(parent)
    try:
        with sqlite_engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        otel_context.detach(token)
    (span,) = rig.finished()
    assert span.context.trace_id == 0xABC and span.parent.span_id == 0xDEF


def test_no_span_and_no_sampler_work_under_an_unsampled_parent(sqlite_engine: Any, monkeypatch: Any) -> None:
    rig = TelemetryRig(ParentBased(ALWAYS_ON))
    instrument_engine(sqlite_engine, rig)
    started: list[str] = []
    real = rig.tracer_provider.sampler.should_sample
    monkeypatch.setattr(rig.tracer_provider.sampler, "should_sample",
                        lambda *a, **k: started.append("x") or real(*a, **k))
    token = _under(UNSAMPLED)
    try:
        with sqlite_engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        otel_context.detach(token)
    assert rig.finished() == [] and started == []
    assert rig.metrics()["db.client.operation.duration"][0].count == 1  # the metric is always recorded


def test_statement_outside_any_request_is_a_root_subject_to_the_sampler(sqlite_engine: Any) -> None:
    dropped, kept = TelemetryRig(ParentBased(ALWAYS_OFF)), TelemetryRig(ParentBased(ALWAYS_ON))
    other = sa.create_engine(sqlite_engine.url)
    instrument_engine(sqlite_engine, dropped)
    instrument_engine(other, kept)
    for engine in (sqlite_engine, other):
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    other.dispose()
    assert dropped.finished() == []
    (root,) = kept.finished()
    assert root.parent is None


def test_by_default_a_statement_outside_any_span_starts_none(sqlite_engine: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("SIZEWISE_DB_ROOT_SPANS", raising=False)
    assert Settings().sizewise_db_root_spans is False
    rig = TelemetryRig(ALWAYS_ON, roots=False)
    instrument_engine(sqlite_engine, rig)
    asked: list[str] = []
    real = rig.tracer_provider.sampler.should_sample
    monkeypatch.setattr(rig.tracer_provider.sampler, "should_sample",
                        lambda *a, **k: asked.append("x") or real(*a, **k))
    sampled = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with sqlite_engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))  # outside any span: no span, not even a sampler call
        assert rig.finished() == [] and asked == []
        token = _under(sampled)
        try:
            conn.execute(sa.text("SELECT 2"))  # inside a sampled request: its child, as before
        finally:
            otel_context.detach(token)
    (span,) = rig.finished()
    assert span.parent.span_id == 0xDEF
    assert rig.metrics()["db.client.operation.duration"][0].count == 2  # both counted


def test_a_sampler_that_is_not_parent_based_is_always_asked(sqlite_engine: Any) -> None:
    rig = TelemetryRig(ALWAYS_ON)  # samples children of unsampled parents too
    instrument_engine(sqlite_engine, rig)
    assert SpanGate(rig.tracer_provider).drop_local is False
    token = _under(UNSAMPLED)
    try:
        with sqlite_engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        otel_context.detach(token)
    assert len(rig.finished()) == 1


def test_parameters_and_literals_never_reach_the_span(sqlite_engine: Any) -> None:
    rig = TelemetryRig()
    instrument_engine(sqlite_engine, rig)
    with sqlite_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (name TEXT, pin INTEGER)"))
        conn.execute(sa.text("INSERT INTO users VALUES (:name, :pin)"), {"name": "alice-secret", "pin": 98765})
        conn.execute(sa.text("SELECT name FROM users WHERE name = 'bob-secret' AND pin = 12345"))
    texts = [s.attributes["db.query.text"] for s in rig.finished()]
    joined = repr([dict(s.attributes) for s in rig.finished()]) + repr([s.name for s in rig.finished()])
    for secret in ("alice", "bob", "98765", "12345"):
        assert secret not in joined
    assert "SELECT name FROM users WHERE name = ? AND pin = ?" in texts
    assert "INSERT INTO users VALUES (?, ?)" in texts


def test_sanitize_keeps_placeholders_and_identifiers() -> None:
    assert sanitize_sql("SELECT t1.a FROM t1 WHERE x = $1 AND y = %(p_1)s AND z = :name AND w = -2.5e3") == \
        "SELECT t1.a FROM t1 WHERE x = $1 AND y = %(p_1)s AND z = :name AND w = ?"
    assert sanitize_sql("SELECT 'it''s'") == "SELECT ?"
    assert len(sanitize_sql("SELECT " + "a, " * 2000 + "1")) <= 2048


def test_span_name_is_the_target_else_the_system() -> None:
    assert span_name({"db.system.name": "postgresql", "db.namespace": "app", "server.address": "h"}) == "app"
    assert span_name({"db.system.name": "postgresql", "server.address": "h", "server.port": 5433}) == "h:5433"
    assert span_name({"db.system.name": "postgresql", "server.address": "h"}) == "h"
    assert span_name({"db.system.name": "sqlite"}) == "sqlite"


def test_registered_system_names() -> None:
    assert _SYSTEMS["oracle"] == "oracle.db" and _SYSTEMS["mssql"] == "microsoft.sql_server"


def test_unrecognised_statements_get_no_invented_operation(sqlite_engine: Any) -> None:
    rig = TelemetryRig()
    instrument_engine(sqlite_engine, rig)
    with sqlite_engine.connect() as conn:
        conn.execute(sa.text("VACUUM"))
        conn.execute(sa.text("SELECT 1"))
    spans = rig.finished()
    assert [s.attributes["db.query.text"] for s in spans] == ["VACUUM", "SELECT ?"]
    assert {s.name for s in spans} == {sqlite_engine.url.database}
    assert not any("db.operation.name" in s.attributes for s in spans)
    (point,) = rig.metrics()["db.client.operation.duration"]  # one series per database, not per verb
    assert point.count == 2


def test_failure_sets_error_type_on_span_and_metric_without_the_message(sqlite_engine: Any) -> None:
    rig = TelemetryRig()
    instrument_engine(sqlite_engine, rig)
    with sqlite_engine.connect() as conn, pytest.raises(sa.exc.OperationalError):
        conn.execute(sa.text("SELECT secret_column FROM no_such_table"))
    (span,) = rig.finished()
    assert span.attributes["error.type"] == "sqlite3.OperationalError"  # one rule: qualified outside builtins
    assert span.status.status_code is StatusCode.ERROR
    assert "no_such_table" not in (span.status.description or "")
    (point,) = rig.metrics()["db.client.operation.duration"]
    assert dict(point.attributes) == {"db.system.name": "sqlite", "db.namespace": sqlite_engine.url.database,
                                      "error.type": "sqlite3.OperationalError"}


def test_executemany_is_one_span_with_the_batch_size(sqlite_engine: Any) -> None:
    rig = TelemetryRig()
    instrument_engine(sqlite_engine, rig)
    with sqlite_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (v INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:v)"), [{"v": i} for i in range(5)])
    (insert,) = [s for s in rig.finished() if s.attributes["db.query.text"].startswith("INSERT")]
    assert insert.attributes["db.operation.batch.size"] == 5


def test_instrumenting_the_same_engine_twice_is_harmless(sqlite_engine: Any) -> None:
    rig = TelemetryRig()
    assert instrument_engine(sqlite_engine, rig) is instrument_engine(sqlite_engine, rig)
    with sqlite_engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert len(rig.finished()) == 1
    assert rig.metrics()["db.client.operation.duration"][0].count == 1
    assert rig.observed.count("db.client.connection.count") == 1


def test_async_engine_against_postgres(postgres_url: str) -> None:
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    rig = TelemetryRig(ParentBased(ALWAYS_OFF))
    engine = create_async_engine(postgres_url)
    instrument_engine(engine, rig)
    instrument_engine(engine.sync_engine, rig)  # the same engine: still one listener
    parent = SpanContext(0xAB, 0xCD, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    async def run() -> None:
        token = _under(parent)
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(sa.text("SELECT 1"))).scalar() == 1
        finally:
            otel_context.detach(token)
        await engine.dispose()

    asyncio.run(run())
    spans = [s for s in rig.finished() if s.attributes.get("db.query.text") == "SELECT ?"]
    assert len(spans) == 1
    span = spans[0]
    url = sa.engine.make_url(postgres_url)
    assert span.context.trace_id == 0xAB  # the current context crossed into SQLAlchemy's greenlet
    assert span.attributes["db.system.name"] == "postgresql"
    assert span.attributes["db.namespace"] == url.database
    assert span.attributes["server.address"] == "127.0.0.1"
    assert span.attributes["server.port"] == url.port
    assert span.name == url.database
    (point,) = [p for p in rig.metrics()["db.client.operation.duration"] if "error.type" not in p.attributes]
    assert dict(point.attributes) == {"db.system.name": "postgresql", "db.namespace": url.database,
                                      "server.address": "127.0.0.1", "server.port": url.port}


def test_ratio_sampled_roots_keep_the_sdk_decision_and_ids(sqlite_engine: Any) -> None:
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    root = TraceIdRatioBased(0.5)
    rig = TelemetryRig(ParentBased(root))
    instrument_engine(sqlite_engine, rig)
    with sqlite_engine.connect() as conn:
        for _ in range(400):
            conn.execute(sa.text("SELECT 1"))
    spans = rig.finished()
    assert 120 < len(spans) < 280  # binomial(400, 0.5): far outside 6 sigma otherwise
    assert all(s.parent is None for s in spans)
    # every kept root carries a trace id the SDK's ratio rule samples, and the ids are distinct
    assert all(s.context.trace_id & root.TRACE_ID_LIMIT < root.bound for s in spans)
    assert len({s.context.trace_id for s in spans}) == len(spans)
    # the pre-drawn id never leaks: a span started afterwards by the provider gets a fresh one
    other = rig.tracer_provider.get_tracer("other").start_span("x")
    assert other.get_span_context().trace_id not in {s.context.trace_id for s in spans}


def test_an_option_engine_sharing_the_dialect_is_not_wrapped_twice(sqlite_engine: Any) -> None:
    rig = TelemetryRig()
    instrument_engine(sqlite_engine, rig)
    copy = sqlite_engine.execution_options(isolation_level="AUTOCOMMIT")
    instrument_engine(copy, rig)
    with copy.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert len(rig.finished()) == 1


def test_pool_connections_by_state_and_maximum_per_pool(tmp_path: Any, postgres_url: str) -> None:
    """db.client.connection.count{state=used|idle} and db.client.connection.max, by pool name
    (server:port/database, never the password); one callback reads every engine's current pool."""
    from sizewise_otel.instruments.sql import pool_name

    rig = TelemetryRig()
    pg = sa.create_engine(postgres_url, pool_size=3, max_overflow=2)
    lite = sa.create_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=4, max_overflow=0)
    instrument_engine(pg, rig)
    instrument_engine(lite, rig)
    url = pg.url
    pg_name = f"{url.host}:{url.port}/{url.database}"
    assert pool_name(pg) == pg_name and "@" not in pg_name
    assert pool_name(lite) == str(tmp_path / "pool.db")
    counts, maxima = rig.callbacks["db.client.connection.count"], rig.callbacks["db.client.connection.max"]
    try:
        with pg.connect(), pg.connect():
            pass  # two opened and returned: idle
        with pg.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            got = {(a["db.client.connection.pool.name"], a["db.client.connection.state"]): v for v, a in counts()}
            assert got == {(pg_name, "used"): 1.0, (pg_name, "idle"): 1.0,
                           (str(tmp_path / "pool.db"), "used"): 0.0, (str(tmp_path / "pool.db"), "idle"): 0.0}
        assert sorted((a["db.client.connection.pool.name"], v) for v, a in maxima()) == sorted(
            [(pg_name, 5.0), (str(tmp_path / "pool.db"), 4.0)])
        assert all("state" not in a for _, a in maxima())  # no state="max" beside used/idle
        pg.dispose()  # a new pool: the gauges follow it
        got = {(a["db.client.connection.pool.name"], a["db.client.connection.state"]): v for v, a in counts()}
        assert got[(pg_name, "idle")] == 0.0
    finally:
        pg.dispose()
        lite.dispose()
