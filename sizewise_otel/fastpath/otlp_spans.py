"""OTLP trace encoding without one protobuf object per span, attribute and value.

The OTLP exporters' ``encode_spans`` builds a message for every span, attribute, value and event
(about 90 us a typical SERVER span here: ``python bench/figures.py otlp``), in the span export thread
of every process that exports, on the same CPU as its requests. :func:`encode_spans` writes the same
``ExportTraceServiceRequest`` on the wire directly (an attribute's key and value encoded once and kept
in a bounded cache; resources and scopes once a batch) and parses it into the library's own message,
so the exporter serialises, checks and sends exactly what it always does.

Exact where checked: once per process, :func:`_probe` encodes spans of every shape the encoder takes
(each value type, arrays, events, links, status, trace state, remote and local parents, several
resources and scopes) both ways and compares the messages. A difference, a missing library name, or a
value it does not take (a mapping, an int past 64 bits, a string that is not UTF-8) leaves the batch to
the library's encoder.

:func:`install` puts a dispatcher in place of ``encode_spans`` in the OTLP exporter modules; it uses this
encoder only inside :func:`encoding` (what sizewise's own exporter wrapper enters), so any other exporter
in the process keeps the library's. :func:`uninstall` puts the library's function back.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sizewise_otel.fastpath.bounded import BoundedCache
from sizewise_otel.fastpath.detect import probe_span_limits, probed_once

# The exporter modules that look ``encode_spans`` up as a module global when they export.
EXPORTER_MODULES = ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
LIBRARY_ENCODER = "opentelemetry.exporter.otlp.proto.common.trace_encoder"
# Encoded key/value pairs kept: the common ones (method, route, status, host...) repeat on every span.
MAX_CACHED_ATTRIBUTES = 4096

_FLAGS_HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_FLAGS_IS_REMOTE = 0x200      # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_INT64_MIN, _INT64_LIMIT = -(1 << 63), 1 << 63
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_SMALL = [bytes([i]) for i in range(128)]


class Unusual(Exception):
    """A value this encoder does not take: the batch goes to the library's encoder."""


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 127:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else _varint(n)) + payload


def _text(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: the library's encoder reports it its way
        raise Unusual from exc


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message's bytes, as ``_encode_value`` builds it (its type ladder, in its order)."""
    cls = value.__class__
    if value is None:
        return b""
    if cls is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if cls is str:
        return _field(b"\x0a", _text(value))
    if cls is int:
        if not _INT64_MIN <= value < _INT64_LIMIT:
            raise Unusual
        return b"\x18" + _varint(value if value >= 0 else value + (1 << 64))
    if cls is float:
        return b"\x21" + _pack_double(value)
    if cls is bytes:
        return _field(b"\x3a", value)
    if cls is tuple or cls is list:
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    raise Unusual  # a subclass, a mapping, anything else: the library's ladder decides


class _Encoder:
    def __init__(self) -> None:
        self.attributes: BoundedCache[tuple[str, type, Any], bytes] = BoundedCache(MAX_CACHED_ATTRIBUTES)
        self.names: BoundedCache[str, bytes] = BoundedCache(MAX_CACHED_ATTRIBUTES)

    def attribute_list(self, tag: bytes, attributes: Any) -> bytes:
        """Every attribute as a repeated ``KeyValue`` field under ``tag``."""
        if not attributes:
            return b""
        cache = self.attributes
        parts = []
        # The SDK's BoundedAttributes iterate through the Mapping mixins and its lock, key by key; its
        # dict holds the same items in the same order.
        for key, value in getattr(attributes, "_dict", attributes).items():
            found = cache.get((key, value.__class__, value))
            if found is None:
                if key.__class__ is not str:
                    raise Unusual
                found = _field(tag, _field(b"\x0a", _text(key)) + _field(b"\x12", _any_value(value)))
                if value.__class__ in (str, int, bool, float, bytes):
                    cache.put((key, value.__class__, value), found)
            parts.append(found)
        return b"".join(parts)

    def span(self, span: Any) -> bytes:
        context = span.get_span_context()
        parent = span.parent
        name = self.names.get(span.name)
        if name is None:
            name = self.names.put(span.name, _field(b"\x2a", _text(span.name)))
        parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08", context.span_id.to_bytes(8, "big")]
        state = context.trace_state
        if state:
            parts.append(_field(b"\x1a", _text(",".join(f"{k}={v}" for k, v in state.items()))))
        if parent:
            parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
        parts.append(name)
        kind = span.kind.value + 1  # SDK SpanKind INTERNAL=0.. -> OTLP SPAN_KIND_INTERNAL=1..
        parts.append(b"\x30" + _SMALL[kind])
        if span.start_time:
            parts += (b"\x39", _pack_fixed64(span.start_time))
        if span.end_time:
            parts += (b"\x41", _pack_fixed64(span.end_time))
        parts.append(self.attribute_list(b"\x4a", span.attributes))
        if span.dropped_attributes:
            parts += (b"\x50", _varint(span.dropped_attributes))
        for event in span.events:
            body = b"\x09" + _pack_fixed64(event.timestamp) if event.timestamp else b""
            if event.name:
                body += _field(b"\x12", _text(event.name))
            body += self.attribute_list(b"\x1a", event.attributes)
            if event.dropped_attributes:
                body += b"\x20" + _varint(event.dropped_attributes)
            parts.append(_field(b"\x5a", body))
        if span.dropped_events:
            parts += (b"\x60", _varint(span.dropped_events))
        for link in span.links:
            linked = link.context
            body = (b"\x0a\x10" + linked.trace_id.to_bytes(16, "big") + b"\x12\x08" + linked.span_id.to_bytes(8, "big")
                    + self.attribute_list(b"\x22", link.attributes))
            if link.dropped_attributes:
                body += b"\x28" + _varint(link.dropped_attributes)
            body += b"\x35" + _pack_fixed32(_FLAGS_HAS_IS_REMOTE | (_FLAGS_IS_REMOTE if linked.is_remote else 0))
            parts.append(_field(b"\x6a", body))
        if span.dropped_links:
            parts += (b"\x70", _varint(span.dropped_links))
        status = span.status
        if status is not None:
            body = _field(b"\x12", _text(status.description)) if status.description else b""
            if status.status_code.value:
                body += b"\x18" + _SMALL[status.status_code.value]
            parts.append(_field(b"\x7a", body))
        flags = _FLAGS_HAS_IS_REMOTE | (_FLAGS_IS_REMOTE if parent and parent.is_remote else 0)
        parts += (b"\x85\x01", _pack_fixed32(flags))
        return _field(b"\x12", b"".join(parts))  # a ScopeSpans' repeated ``spans`` field

    def scope(self, scope: Any) -> bytes:
        if scope is None:
            return _field(b"\x0a", b"")
        body = _field(b"\x0a", _text(scope.name)) if scope.name else b""
        if scope.version:
            body += _field(b"\x12", _text(scope.version))
        return _field(b"\x0a", body + self.attribute_list(b"\x1a", scope.attributes))

    def request(self, spans: Sequence[Any]) -> bytes:
        """An ``ExportTraceServiceRequest``'s bytes: spans grouped by resource, then scope, as the library does."""
        groups: dict[Any, dict[Any, list[bytes]]] = {}
        seen: dict[tuple[int, int], list[bytes]] = {}  # by identity: Resource hashes through JSON each time
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope or None
            bucket = seen.get((id(resource), id(scope)))
            if bucket is None:
                bucket = seen[(id(resource), id(scope))] = groups.setdefault(resource, {}).setdefault(scope, [])
            bucket.append(self.span(span))
        out = []
        for resource, scopes in groups.items():
            body = _field(b"\x0a", self.attribute_list(b"\x0a", resource.attributes))
            for scope, encoded in scopes.items():
                scope_spans = self.scope(scope) + b"".join(encoded)
                if scope is not None and scope.schema_url:
                    scope_spans += _field(b"\x1a", _text(scope.schema_url))
                body += _field(b"\x12", scope_spans)
            if resource.schema_url:
                body += _field(b"\x1a", _text(resource.schema_url))
            out.append(_field(b"\x0a", body))
        return b"".join(out)


_ENCODER = _Encoder()
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("sizewise_lean_otlp_encoding", default=False)
_lock = threading.Lock()
_installed: dict[str, Callable[..., Any]] = {}  # module name -> the library function it had


def encode_spans(spans: Sequence[Any]) -> Any:
    """The library's ``ExportTraceServiceRequest`` for ``spans``, built from wire bytes written here."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        data = _ENCODER.request(spans)
    except Exception:  # Unusual, or a span this encoder cannot read: the library's encoder decides
        return _library()(spans)
    return ExportTraceServiceRequest.FromString(data)


def _library() -> Callable[[Sequence[Any]], Any]:
    return importlib.import_module(LIBRARY_ENCODER).encode_spans


def _dispatcher(original: Callable[[Sequence[Any]], Any]) -> Callable[[Sequence[Any]], Any]:
    def encode(spans: Sequence[Any]) -> Any:
        return encode_spans(spans) if _ACTIVE.get() else original(spans)

    encode.__wrapped__ = original  # type: ignore[attr-defined]
    return encode


def exact() -> bool:
    """Whether this encoder gives the library's message on this install (probed once per process)."""
    return _exact()


def install() -> bool:
    """Put the dispatcher in the exporter modules imported so far (the exporter in use is); False when
    not exact. A module imported later keeps the library's encoder: nothing is imported for it here."""
    if not exact():
        return False
    with _lock:
        for name in EXPORTER_MODULES:
            module = sys.modules.get(name)
            if name in _installed or module is None:
                continue
            original = getattr(module, "encode_spans", None)
            if callable(original):
                _installed[name] = original
                module.encode_spans = _dispatcher(original)
    return bool(_installed)


def uninstall() -> None:
    """Give every exporter module its own ``encode_spans`` back."""
    with _lock:
        for name, original in list(_installed.items()):
            module = sys.modules[name]
            if getattr(getattr(module, "encode_spans", None), "__wrapped__", None) is original:
                module.encode_spans = original
            del _installed[name]


@contextlib.contextmanager
def encoding() -> Iterator[None]:
    """Within: the installed exporters encode with this module (in this thread or task only)."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _probe() -> bool:
    """Spans of every shape, encoded both ways, must give equal messages."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    from opentelemetry.trace import (
        Link,
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
        TraceState,
        set_span_in_context,
    )

    exporter = InMemorySpanExporter()
    # Nothing from the environment: a sampler or limits set for the service must not thin the probe.
    limits = probe_span_limits()
    for resource, schema in ((Resource({"service.name": "probe", "n": 1}), "https://opentelemetry.io/schemas/1.21.0"),
                             (Resource({"service.name": "other"}), "")):
        provider = TracerProvider(resource=resource, sampler=ALWAYS_ON, span_limits=limits, shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        for tracer in (provider.get_tracer("probe.scope", "1.0", schema_url=schema, attributes={"s": "x"}),
                       provider.get_tracer("probe.bare")):
            remote = SpanContext(7, 8, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")]))
            link = Link(SpanContext(9, 10, is_remote=False), {"l": 1})
            with tracer.start_as_current_span("root", kind=SpanKind.SERVER, context=set_span_in_context(
                    NonRecordingSpan(remote)), links=[link], attributes={
                    "s": "é", "b": True, "f": False, "i": -5, "z": 0, "big": 2**62, "d": 1.5, "e": "",
                    "arr": ("a", "b"), "ints": (1, 2), "flags": [True, False], "ds": (2.5,), "empty": ()}) as span:
                span.add_event("exception", {"exception.type": "ValueError"}, timestamp=123)
                span.add_event("plain")
                span.set_status(Status(StatusCode.ERROR, "boom"))
                child = tracer.start_span("child", kind=SpanKind.CLIENT)
                child.set_status(Status(StatusCode.OK))
                child.end()
            tracer.start_span("internal").end()
    spans = list(exporter.get_finished_spans())
    ours = ExportTraceServiceRequest.FromString(_ENCODER.request(spans))  # no fallback: this encoder's own
    return len(spans) == 12 and ours == _library()(spans) and encode_spans([]) == _library()([])


_exact = probed_once(_probe)
