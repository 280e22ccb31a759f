"""Session-wide real servers, started once and shared; each test gets its own database/keyspace."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests import servers, webhook

# Hundreds of apps start in this one process: freezing the heap at each start-up would keep every
# earlier test's cyclic garbage for good. tests/unit/test_heap.py checks the freeze itself.
os.environ.setdefault("SIZEWISE_GC_FREEZE", "false")

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[servers.Server]:
    with servers.postgres_server() as srv:
        yield srv


@pytest.fixture
def postgres_url(postgres: servers.Server) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return servers.create_database(postgres, f"t{next(_db_counter)}")


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[servers.Server]:
    with servers.redis_server() as srv:
        yield srv


@pytest.fixture
def redis_url(redis_srv: servers.Server) -> str:
    import redis

    if redis_srv.proc is None or redis_srv.proc.poll() is not None:
        redis_srv.start()
    client = redis.Redis(port=redis_srv.port)
    client.flushall()
    client.close()
    return f"redis://127.0.0.1:{redis_srv.port}/0"


@pytest.fixture(scope="session", autouse=True)
def process_telemetry():
    """The test process's one Telemetry: every span sampled and kept in memory for assertions."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sizewise_otel import telemetry
    from sizewise_otel.settings import Settings

    if telemetry._telemetry is not None:
        yield telemetry._telemetry
        return
    exporter = InMemorySpanExporter()
    tel = telemetry.configure_telemetry(
        Settings(otel_traces_sampler="always_on", otel_exporter_otlp_endpoint=""),
        span_exporters=[exporter])
    tel.memory_exporter = exporter  # type: ignore[attr-defined]
    yield tel


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under SIZEWISE_REQUIRE_INTEGRATION=1 (CI, fresh-clone-test) any skip is a failure, whatever raised it."""
    outcome = yield
    report = outcome.get_result()
    if servers.REQUIRE and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"SIZEWISE_REQUIRE_INTEGRATION=1 turns this skip into a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """The same for a module that skips itself at import (``pytest.importorskip`` at the top)."""
    outcome = yield
    report = outcome.get_result()
    if servers.REQUIRE and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"SIZEWISE_REQUIRE_INTEGRATION=1 turns this skip into a failure: {report.longrepr}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    servers.remove_session_tmp()


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, webhook.Received]]:
    """A loopback webhook receiver: (base URL, every POST as (path, headers, body))."""
    with webhook.receiver() as found:
        yield found


@pytest.fixture
def webhook_blackhole() -> Iterator[str]:
    """A loopback base URL that accepts connections and never answers."""
    with webhook.blackhole() as url:
        yield url
