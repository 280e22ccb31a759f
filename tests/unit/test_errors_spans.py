"""The request path / writer thread split of capture_error, the lazy span event, and which span
attributes keep IP addresses (infrastructure) and which lose them (clients)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

import sizewise_otel.errors.tracker as tracker_mod
from sizewise_otel.errors import ErrorContext, ErrorTracker
from sizewise_otel.errors.scrub import FILTERED, Scrubber
from sizewise_otel.errors.spans import LazyExceptionEvent, install_span_scrubber
from sizewise_otel.telemetry import get_telemetry
from tests.unit.test_errors_helpers import PII, leaked, pii_message, spans_text, test_settings

# Everything that formats, matches or hashes: none of it may run while capture_error's caller waits.
DEFERRED = ("fingerprint", "parameterize", "parameterize_route", "format_stacktrace", "extract_frames",
            "frames_from_stack_snapshot")


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[ErrorTracker]:
    settings = test_settings(f"sqlite:///{tmp_path / 'errors.db'}")
    t = ErrorTracker(settings, get_telemetry(settings))
    asyncio.run(t.initialize())
    yield t
    asyncio.run(t.shutdown())


@pytest.fixture
def provider(tracker: ErrorTracker) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A sampled provider with the tracker's scrubbing processor and an in-memory exporter."""
    p = TracerProvider(sampler=ALWAYS_ON)
    install_span_scrubber(p, tracker.scrubber)
    exporter = InMemorySpanExporter()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p, exporter


class Spies:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def spy(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, threading.get_ident()))
            return fn(*args, **kwargs)
        return spy

    def on(self, thread_id: int) -> list[str]:
        return [name for name, tid in self.calls if tid == thread_id]


@pytest.fixture
def spies(tracker: ErrorTracker, monkeypatch: pytest.MonkeyPatch) -> Spies:
    sp = Spies()
    for name in DEFERRED:
        monkeypatch.setattr(tracker_mod, name, sp.wrap(name, getattr(tracker_mod, name)))
    for name in ("text", "mapping", "value", "attributes"):
        monkeypatch.setattr(tracker.scrubber, name, sp.wrap(f"scrubber.{name}", getattr(tracker.scrubber, name)))
    return sp


def _pay(n: int) -> None:
    raise RuntimeError(pii_message(n))


def _err(n: int) -> BaseException:
    try:
        _pay(n)
    except RuntimeError as exc:
        return exc
    raise AssertionError


def test_capture_defers_scrub_and_fingerprint_to_the_writer(tracker: ErrorTracker, spies: Spies) -> None:
    me = threading.get_ident()
    ctx = ErrorContext(user_id=PII["email"], endpoint="/pay/{id}", method="POST",
                       extra={"password": PII["password"], "note": pii_message(2)})
    ids = [tracker.capture_error(_err(i), ctx) for i in range(5)]
    ids.append(tracker.capture_error(None, message=f"plain message for {PII['email']}"))
    assert spies.on(me) == []  # nothing formatted, scrubbed or fingerprinted on the caller's thread
    assert tracker.flush(10)
    writer_calls = [name for name, tid in spies.calls if tid != me]
    assert {"fingerprint", "format_stacktrace", "scrubber.text", "scrubber.mapping"} <= set(writer_calls)
    assert spies.on(me) == []
    event = tracker.store.get_event(ids[0])
    assert event is not None and leaked(repr(event)) == []
    assert event["context"]["extra"]["password"] == FILTERED and event["context"]["user_id"] == "[email]"
    assert event["title"].startswith("RuntimeError: charge <int> failed for [email]")
    assert tracker.store.get_event(ids[-1])["message"] == "plain message for [email]"


def test_recording_span_gets_a_lazy_scrubbed_event(tracker: ErrorTracker, spies: Spies,
                                                   provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    p, exporter = provider
    me = threading.get_ident()
    with p.get_tracer("t").start_as_current_span("req", kind=SpanKind.SERVER) as span:
        error_id = tracker.capture_error(_err(1), ErrorContext(endpoint="/pay/{id}"), source="request")
        assert spies.on(me) == []
        assert span.status.status_code.name == "ERROR" and span.attributes["error.type"] == "RuntimeError"
        (event,) = [e for e in span.events if e.name == "exception"]
        assert isinstance(event, LazyExceptionEvent) and event._resolve is not None  # not computed yet
    # The scrubbing processor ran at span end on this thread without resolving our event.
    assert "fingerprint" not in spies.on(me) and "format_stacktrace" not in spies.on(me)
    (finished,) = exporter.get_finished_spans()
    attrs = finished.events[0].attributes  # what an exporter reads (normally on its own thread)
    assert attrs["sizewise.error.id"] == error_id and "exception.escaped" not in attrs  # deprecated
    assert "Traceback" in attrs["exception.stacktrace"] and "[email]" in attrs["exception.message"]
    assert leaked(spans_text([finished])) == []
    assert tracker.flush(10)
    stored = tracker.store.get_event(error_id)
    assert stored["group_id"] == attrs["sizewise.error.group_id"]  # span and store agree
    assert stored["trace_id"] == format(finished.context.trace_id, "032x")


def test_group_is_that_of_the_capture_point_even_if_the_exception_travels_on(tracker: ErrorTracker) -> None:
    """The traceback head is snapshotted at capture: frames a later re-raise adds do not count."""
    ids: list[str] = []

    def outer() -> None:
        try:
            _pay(1)
        except RuntimeError as exc:
            ids.append(tracker.capture_error(exc))
            raise  # travels on through reraiser() after the capture

    def reraiser() -> None:
        with contextlib.suppress(RuntimeError):
            outer()

    with tracker_mod._prepare_lock:  # the writer cannot prepare the event before the re-raise
        reraiser()
    direct = tracker.capture_error(_err(2))
    assert tracker.flush(10)
    moved_frames = [f["function"] for f in tracker.store.get_event(ids[0])["frames"]]
    assert moved_frames[-2:] == [f"{outer.__qualname__}", "_pay"] and not any("reraiser" in f for f in moved_frames)
    assert tracker.store.get_event(direct)["frames"][-1]["function"] == "_pay"


def test_queue_full_path_defers_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = test_settings(f"sqlite:///{tmp_path / 'e.db'}", error_queue_size=10)
    t = ErrorTracker(settings, get_telemetry(settings))
    t.writer.start = lambda: None  # type: ignore[method-assign]  # nothing drains: the queue fills
    t.writer._thread = threading.current_thread()  # type: ignore[assignment]
    sp = Spies()
    for name in DEFERRED:
        monkeypatch.setattr(tracker_mod, name, sp.wrap(name, getattr(tracker_mod, name)))
    monkeypatch.setattr(t.scrubber, "text", sp.wrap("scrubber.text", t.scrubber.text))
    try:
        for i in range(25):
            t.capture_error(_err(i), ErrorContext(extra={"password": "x"}))
        assert t.dropped["queue_full"] == 15 and t.writer.depth == 10
        assert sp.calls == []
    finally:
        t.writer._thread = None


# --- IP addresses on spans: clients are personal data, infrastructure is not ---------------------

def _export(scrubber: Scrubber, kind: SpanKind, attrs: dict[str, Any]) -> dict[str, Any]:
    p = TracerProvider(sampler=ALWAYS_ON)
    install_span_scrubber(p, scrubber)
    exporter = InMemorySpanExporter()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    with p.get_tracer("t").start_as_current_span("s", kind=kind, attributes=attrs) as span:
        span.add_event("note", {"server.address": attrs.get("server.address", ""),
                                "client.address": "203.0.113.9"})
    (finished,) = exporter.get_finished_spans()
    event_attrs = dict(finished.events[0].attributes)
    assert event_attrs["client.address"] == ("[ip]" if scrubber.ip_addresses else "203.0.113.9")
    assert event_attrs["server.address"] == attrs.get("server.address", "")
    return dict(finished.attributes)


def test_outbound_spans_keep_peer_addresses_but_not_secrets() -> None:
    out = _export(Scrubber(), SpanKind.CLIENT, {
        "server.address": "127.0.0.1", "server.port": 8001, "network.peer.address": "10.0.0.5",
        "net.peer.name": "10.0.0.5", "db.system": "postgresql",
        "db.connection_string": "postgresql://app:pa55w0rd-xyz@10.0.0.7:5432/hvac",
        "url.full": "http://10.0.0.5:8001/lookup?ip=203.0.113.9&token=abc123&mail=jane.doe@example.com",
        "db.statement": "SELECT * FROM visits WHERE ip = '203.0.113.9'",
        "http.request.header.x-forwarded-for": ("203.0.113.9, 10.0.0.1",),
    })
    assert out["server.address"] == "127.0.0.1" and out["server.port"] == 8001
    assert out["network.peer.address"] == "10.0.0.5" and out["net.peer.name"] == "10.0.0.5"
    assert out["db.connection_string"] == "postgresql://[Filtered]@10.0.0.7:5432/hvac"
    url = out["url.full"]
    assert url.startswith("http://10.0.0.5:8001/lookup?") and "203.0.113.9" not in url
    assert "abc123" not in url and "jane.doe" not in url
    assert "203.0.113.9" not in out["db.statement"]  # query text is data, not a connection attribute
    assert "203.0.113.9" not in out["http.request.header.x-forwarded-for"][0]


def test_server_spans_lose_client_addresses() -> None:
    out = _export(Scrubber(), SpanKind.SERVER, {
        "server.address": "10.0.0.5", "client.address": "203.0.113.9", "network.peer.address": "203.0.113.9",
        "net.peer.ip": "203.0.113.9", "http.client_ip": "203.0.113.9",
        "http.request.header.x-forwarded-for": ("203.0.113.9",), "url.full": "http://10.0.0.5/x?from=203.0.113.9",
        "app.note": "seen from 198.51.100.4",
    })
    assert out["server.address"] == "10.0.0.5"  # this service's own address
    for key in ("client.address", "network.peer.address", "net.peer.ip", "http.client_ip"):
        assert out[key] == "[ip]", key
    assert out["http.request.header.x-forwarded-for"] == ("[ip]",)
    assert "203.0.113.9" not in out["url.full"] and "198.51.100.4" not in out["app.note"]


def test_ip_setting_off_keeps_every_address() -> None:
    out = _export(Scrubber(ip_addresses=False), SpanKind.SERVER, {"client.address": "203.0.113.9",
                                                                   "server.address": "10.0.0.5"})
    assert out == {"client.address": "203.0.113.9", "server.address": "10.0.0.5"}


def test_scrubbed_attributes_rewritten_in_place_within_limits() -> None:
    """Only the values that change are replaced, in the span's own bounded attributes, cut to the
    span's value-length limit; structural attributes are left alone."""
    from opentelemetry.sdk.trace import SpanLimits

    p = TracerProvider(sampler=ALWAYS_ON, span_limits=SpanLimits(max_span_attribute_length=8))
    install_span_scrubber(p, Scrubber())
    exporter = InMemorySpanExporter()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    with p.get_tracer("t").start_as_current_span("GET /x", kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", "GET")
        span.set_attribute("http.response.status_code", 200)
        span.set_attribute("app.user", "a@b.io")
        span.set_attribute("app.auth_token", "abcdef")
        span.set_attribute("client.address", "10.1.2.3")
        span.set_attribute("app.tags", ("x", "10.0.0.1"))
        attrs_before = span._attributes
    assert span._attributes is attrs_before  # rewritten in place, not rebuilt
    (done,) = exporter.get_finished_spans()
    assert dict(done.attributes) == {
        "http.request.method": "GET", "http.response.status_code": 200,
        "app.user": "[email]", "app.auth_token": FILTERED[:8], "client.address": "[ip]",
        "app.tags": ("x", "[ip]")}
    assert list(done.attributes) == ["http.request.method", "http.response.status_code", "app.user",
                                     "app.auth_token", "client.address", "app.tags"]
