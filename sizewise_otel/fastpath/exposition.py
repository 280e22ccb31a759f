"""``GET /metrics`` rendered straight from the SDK's collected data, in one pass.

``PrometheusMetricReader`` answers a scrape in three pure-Python passes: the SDK collection, a
translation of every data point into ``prometheus_client`` families (a label dict per sample), and
``generate_latest`` formatting those samples again (sorting and escaping every label set). At 10k
series the last two cost more than the collection itself.

:class:`FastPrometheusMetricReader` is a ``PrometheusMetricReader`` (its collector stays registered
in ``prometheus_client.REGISTRY``, so ``REGISTRY.collect()`` readers such as the dashboard history
and the alert evaluator see exactly what they saw before) that can also render the Prometheus text
format 0.0.4 itself, from one SDK collection: label strings are built once per (stream, attribute
set) and reused while the attribute set lives; a scrape only formats numbers and joins strings.

The output is the same text ``generate_latest(REGISTRY)`` produces: the same families in the same
order, HELP/TYPE lines, name translation (unit suffixes, ``_total``, ``_bucket/_count/_sum``, ``le``
as ``PrometheusMetricReader`` formats it), ``target_info``, ``otel_scope_*`` labels, label value
escaping, number formatting, and no exemplars. Everything that is not on the hot path (family
headers, ``target_info``, name and unit mapping, label value conversion) is produced by the
exporter's and ``prometheus_client``'s own code and cached; rare shapes (two streams of one family
with different label keys, an attribute sanitized to ``le``) take a generic, uncached path that
mirrors ``prometheus_client`` sample by sample.

:func:`generate_latest` is a drop-in for ``prometheus_client.generate_latest`` on a registry: the
fast readers' collectors are rendered by their reader, every other collector (process, platform,
GC, anything registered later) by ``prometheus_client``, in registry order.
"""

from __future__ import annotations

import bisect
import logging
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import Any

import prometheus_client
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_attribute
from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, Histogram, MetricsData, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest as _prom_generate_latest
from prometheus_client.utils import floatToGoString

from sizewise_otel.fastpath import collection
from sizewise_otel.fastpath.bounded import BoundedCache
from sizewise_otel.fastpath.detect import enabled

_logger = logging.getLogger(__name__)

try:  # prometheus_client 0.22+; before it, generate_latest printed names as they are
    from prometheus_client.openmetrics.exposition import escape_metric_name
except ImportError:  # detect.py turns the fast path off here, but the module must still import
    def escape_metric_name(s: str) -> str:
        return s

#: Attribute sets whose label strings are kept between scrapes (all streams together). The cache
#: holds only the attribute sets of the last collection, so it never grows past one exposition.
DEFAULT_MAX_CACHED_SERIES = 200_000

_COUNTER, _GAUGE, _HISTOGRAM = "counter", "gauge", "histogram"
_FAMILY_CLASS = {_COUNTER: CounterMetricFamily, _GAUGE: GaugeMetricFamily, _HISTOGRAM: HistogramMetricFamily}

# Collector -> reader, for the registry-level generate_latest below.
_FAST_COLLECTORS: weakref.WeakKeyDictionary[Any, FastPrometheusMetricReader] = weakref.WeakKeyDictionary()


def _escape_value(value: str) -> str:
    """A label value as ``prometheus_client`` writes it (text format 0.0.4)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _num(value: Any) -> str:
    """``floatToGoString``, with the common integer case short-cut (same result)."""
    if value.__class__ is int and -1_000_000_000_000_000 < value < 1_000_000:
        return f"{value}.0"
    return floatToGoString(value)


class _Families:
    """A fixed list of ``prometheus_client`` families, as a collector."""

    def __init__(self, families: Iterable[Any]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Any]:
        return self.families


class _Collectors:
    """Several collectors, in order, as one."""

    def __init__(self, collectors: Sequence[Any]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Any]:
        for collector in self.collectors:
            yield from collector.collect()


def _render_families(families: Iterable[Any]) -> str:
    return _prom_generate_latest(_Families(families)).decode("utf-8")


class _Family:
    """One Prometheus family: its name, its HELP/TYPE header, its kind."""

    __slots__ = ("header", "kind", "name")

    def __init__(self, kind: str, name: str, description: str, unit: str) -> None:
        cls = _FAMILY_CLASS[kind]
        family = cls(name=name, documentation=description, labels=[], unit=unit)
        self.kind = kind
        self.name = escape_metric_name(family.name)
        self.header = _render_families([family])  # no samples: exactly the HELP and TYPE lines


class _Stream:
    """One metric of one scope: its family and the cached label strings of its attribute sets."""

    __slots__ = ("base", "family", "family_id", "keys", "points")

    def __init__(self, family_id: str, family: _Family, base: dict[str, str]) -> None:
        self.family_id = family_id
        self.family = family
        self.base = base  # resource and scope labels: sanitized key -> escaped value
        # id(point.attributes) -> entry (see _ATTRS.._LINE). The entry holds the attributes object
        # itself, so its id cannot be reused by another object while the entry lives.
        self.points: dict[int, list[Any]] = {}
        # The sorted label keys every cached entry's prefix was built for (None: render generally).
        self.keys: tuple[str, ...] | None = None


# An entry: the attributes, their label dict (sanitized key -> escaped value), its keyset, the
# label keys the prefix was built for, the prefix ("name{labels} ", or the histogram's three),
# the bucket bounds the histogram prefixes were built for, and the last point with its line.
_ATTRS, _LABELS, _KEYSET, _KEYS, _PREFIX, _BOUNDS, _LAST, _LINE = range(8)


class _Renderer:
    """The text of one ``_CustomCollector``'s families, from the collected MetricsData."""

    def __init__(self, collector: Any, max_cached: int) -> None:
        self.collector = collector
        self.max_cached = max_cached
        self.streams: dict[tuple[Any, ...], _Stream] = {}
        # Memos of cold-path work, each started afresh when it outgrows its bound.
        self.families: BoundedCache[str, _Family] = BoundedCache(10_000, on_full="clear")
        self.keysets: BoundedCache[frozenset[str], frozenset[str]] = BoundedCache(10_000, on_full="clear")
        self.sorted_keys: BoundedCache[frozenset[str], tuple[str, ...]] = BoundedCache(10_000, on_full="clear")
        self.label_names: BoundedCache[str, str] = BoundedCache(10_000, on_full="clear")
        self.bounds: BoundedCache[tuple[float, ...], tuple[list[str], bool]] = BoundedCache(1_000, on_full="clear")
        self.target_info: str | None = None
        self._cached = 0

    # --- cold paths: everything built here is reused across scrapes ------------------------------

    def _label_name(self, key: str) -> str:
        name = self.label_names.get(key)
        if name is None:
            name = self.label_names.put(key, sanitize_attribute(key))
        return name

    def _value(self, value: Any) -> str:
        return _escape_value(self.collector._check_value(value))

    def _labels(self, base: dict[str, str], attributes: Any) -> dict[str, str]:
        labels = dict(base)
        for key, value in attributes.items():
            labels[self._label_name(key)] = self._value(value)
        return labels

    def _keyset(self, labels: dict[str, str]) -> frozenset[str]:
        keyset = frozenset(labels)
        found = self.keysets.get(keyset)
        if found is None:
            found = self.keysets.put(keyset, keyset)
        return found

    def _keys(self, keysets: set[frozenset[str]]) -> tuple[str, ...]:
        union = next(iter(keysets)) if len(keysets) == 1 else self._keyset(dict.fromkeys(chain(*keysets)))
        keys = self.sorted_keys.get(union)
        if keys is None:
            keys = self.sorted_keys.put(union, tuple(sorted(union)))
        return keys

    def _family(self, family_id: str, kind: str, name: str, description: str, unit: str) -> _Family:
        family = self.families.get(family_id)
        if family is None:
            family = self.families.put(family_id, _Family(kind, name, description, unit))
        return family

    def _bounds(self, explicit_bounds: Sequence[float]) -> tuple[list[str], bool]:
        key = tuple(explicit_bounds)
        found = self.bounds.get(key)
        if found is None:
            les = [f"{bound}" for bound in explicit_bounds] + ["+Inf"]
            # HistogramMetricFamily drops _count and _sum when the first bucket is negative.
            found = self.bounds.put(key, ([_escape_value(le) for le in les], float(les[0]) >= 0))
        return found

    def _target_info(self, data: MetricsData) -> str:
        if self.target_info is None:
            info = self.collector._target_info
            if info is None:
                attributes: dict[str, Any] = {}
                for rm in data.resource_metrics:
                    attributes = {**attributes, **rm.resource.attributes}
                info = self.collector._create_info_metric("target", "Target metadata", attributes)
            self.target_info = _render_families([info])
        return self.target_info

    # --- one scrape --------------------------------------------------------------------------

    def render(self, datas: list[MetricsData]) -> str:
        if not datas:
            return ""
        # family id -> (family, label keys of its first stream, sample lines), in first-seen order
        out: dict[str, tuple[_Family, tuple[str, ...], list[str]]] = {}
        headers: list[str] = []
        if not self.collector._disable_target_info:
            headers.append(self._target_info(datas[0]))
        streams: dict[tuple[Any, ...], _Stream] = {}
        self._cached = 0
        for data in datas:
            for rm in data.resource_metrics:
                resource_attrs = self.collector._build_resource_attrs(rm.resource)
                for sm in rm.scope_metrics:
                    scope_attrs = self.collector._build_scope_attrs(sm.scope)
                    scope_key = repr([*resource_attrs.items(), *scope_attrs.items()])
                    base: dict[str, str] | None = None
                    for metric in sm.metrics:
                        data_ = metric.data
                        if isinstance(data_, Sum):
                            kind = _GAUGE if (not data_.is_monotonic and data_.aggregation_temporality
                                              == AggregationTemporality.CUMULATIVE) else _COUNTER
                        elif isinstance(data_, Gauge):
                            kind = _GAUGE
                        elif isinstance(data_, Histogram):
                            kind = _HISTOGRAM
                        else:
                            _logger.warning("Unsupported metric data. %s", type(data_))
                            continue
                        key = (scope_key, metric.name, metric.description, metric.unit, kind)
                        stream = streams.get(key) or self.streams.get(key)
                        if stream is None:
                            if base is None:
                                base = self._labels({}, dict(chain(resource_attrs.items(), scope_attrs.items())))
                            name = self.collector._resolve_metric_name(metric.name)
                            description = metric.description or ""
                            unit = map_unit(metric.unit or "")
                            family_id = "|".join((name, description, unit, _FAMILY_CLASS[kind].__name__))
                            stream = _Stream(family_id, self._family(family_id, kind, name, description, unit),
                                             base)
                        streams[key] = stream
                        self._render_stream(stream, data_.data_points, out)
        self.streams = streams
        parts = headers
        for family, _keys, lines in out.values():
            parts.append(family.header)
            parts.extend(lines)
        return "".join(parts)

    def _render_stream(self, stream: _Stream, points: Sequence[Any],
                       out: dict[str, tuple[_Family, tuple[str, ...], list[str]]]) -> None:
        caching = self._cached < self.max_cached
        found = out.get(stream.family_id)
        keys = stream.keys
        if (caching and keys is not None and stream.family.kind != _HISTOGRAM
                and (found is None or found[1] is keys)):
            lines = self._render_cached(stream, points, keys)
            if lines is not None:  # every point hit the cache: one pass, no label work
                if found is None:
                    out[stream.family_id] = (stream.family, keys, lines)
                else:
                    found[2].extend(lines)
                return
        cache = stream.points
        fresh: dict[int, list[Any]] = {}
        entries = []
        keysets: set[frozenset[str]] = set()
        for point in points:
            attributes = point.attributes
            entry = cache.get(id(attributes))
            if entry is None or entry[_ATTRS] is not attributes:
                labels = self._labels(stream.base, attributes)
                entry = [attributes, labels, self._keyset(labels), None, None, None, None, None]
            if caching:
                fresh[id(attributes)] = entry
            entries.append(entry)
            keysets.add(entry[_KEYSET])
        stream.points = fresh
        stream.keys = None
        self._cached += len(fresh)
        if not entries:
            return
        keys = self._keys(keysets)
        if found is None:
            found = out[stream.family_id] = (stream.family, keys, [])
        family, fam_keys, lines = found  # a family's first stream decides its header and label names
        if fam_keys != keys or (family.kind == _HISTOGRAM and "le" in keys):
            self._render_generic(family, fam_keys, keys, entries, points, lines)
            return
        stream.keys = keys
        append = lines.append
        if family.kind != _HISTOGRAM:
            for entry, point in zip(entries, points, strict=False):
                if entry[_KEYS] is not keys:
                    inner = ",".join([f'{k}="{entry[_LABELS].get(k, "")}"' for k in keys])
                    suffix = "_total" if family.kind == _COUNTER else ""
                    entry[_PREFIX] = f"{family.name}{suffix}{{{inner}}} " if inner else f"{family.name}{suffix} "
                    entry[_KEYS], entry[_LAST] = keys, None
                append(_line(entry, point))
            return
        split = bisect.bisect(keys, "le")
        for entry, point in zip(entries, points, strict=False):
            bounds = point.explicit_bounds
            if entry[_KEYS] is not keys or entry[_BOUNDS] is not bounds:
                entry[_PREFIX] = self._histogram_prefixes(family.name, keys, split, entry[_LABELS], bounds)
                entry[_KEYS], entry[_BOUNDS] = keys, bounds
            buckets, count_prefix, sum_prefix = entry[_PREFIX]
            total = 0
            for prefix, count in zip(buckets, point.bucket_counts, strict=False):
                total += count
                append(f"{prefix}{_num(total)}\n")
            if count_prefix is not None and point.sum is not None:
                append(f"{count_prefix}{_num(total)}\n")
                append(f"{sum_prefix}{_num(point.sum)}\n")

    def _render_cached(self, stream: _Stream, points: Sequence[Any], keys: tuple[str, ...]) -> list[str] | None:
        """A counter's or gauge's lines when every point's prefix is cached for ``keys``, else None."""
        cache = stream.points
        fresh: dict[int, list[Any]] = {}
        lines: list[str] = []
        append = lines.append
        for point in points:
            attributes = point.attributes
            entry = cache.get(id(attributes))
            if entry is None or entry[_ATTRS] is not attributes or entry[_KEYS] is not keys:
                return None
            fresh[id(attributes)] = entry
            if point is entry[_LAST]:  # the light aggregations return the same point while unchanged
                append(entry[_LINE])
                continue
            value = point.value  # _line(), inlined: this loop runs once per series and scrape
            if value.__class__ is int and -1_000_000_000_000_000 < value < 1_000_000:
                line = f"{entry[_PREFIX]}{value}.0\n"
            else:
                line = f"{entry[_PREFIX]}{floatToGoString(value)}\n"
            entry[_LAST], entry[_LINE] = point, line
            append(line)
        stream.points = fresh
        self._cached += len(fresh)
        return lines

    def _histogram_prefixes(self, name: str, keys: tuple[str, ...], split: int, labels: dict[str, str],
                            bounds: Sequence[float]) -> tuple[list[str], str | None, str]:
        pairs = [f'{k}="{labels.get(k, "")}"' for k in keys]
        les, with_sum = self._bounds(bounds)
        before = "".join(p + "," for p in pairs[:split])
        after = "".join("," + p for p in pairs[split:])
        buckets = [f'{name}_bucket{{{before}le="{le}"{after}}} ' for le in les]
        inner = ",".join(pairs)
        labelstr = f"{{{inner}}}" if inner else ""
        return buckets, (f"{name}_count{labelstr} " if with_sum else None), f"{name}_sum{labelstr} "

    def _render_generic(self, family: _Family, fam_keys: tuple[str, ...], keys: tuple[str, ...],
                        entries: list[list[Any]], points: Sequence[Any], lines: list[str]) -> None:
        """Sample by sample, as ``prometheus_client`` builds and prints them (uncached)."""
        for entry, point in zip(entries, points, strict=False):
            row = [entry[_LABELS].get(k, "") for k in keys]
            labels = dict(zip(fam_keys, row, strict=False))  # a family keeps its first stream's label names
            if family.kind == _COUNTER:
                lines.append(_sample_line(family.name + "_total", labels, point.value))
            elif family.kind == _GAUGE:
                lines.append(_sample_line(family.name, labels, point.value))
            else:
                les, with_sum = self._bounds(point.explicit_bounds)
                total = 0
                for le, count in zip(les, point.bucket_counts, strict=False):
                    total += count
                    lines.append(_sample_line(family.name + "_bucket", {**labels, "le": le}, total))
                if with_sum and point.sum is not None:
                    lines.append(_sample_line(family.name + "_count", labels, total))
                    lines.append(_sample_line(family.name + "_sum", labels, point.sum))


def _line(entry: list[Any], point: Any) -> str:
    """A counter's or gauge's sample line from its cached prefix, kept with its point."""
    line = entry[_LINE] = f"{entry[_PREFIX]}{_num(point.value)}\n"
    entry[_LAST] = point
    return line


def _sample_line(name: str, labels: dict[str, str], value: Any) -> str:
    """``generate_latest``'s sample line; label values here are already escaped."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} {_num(value)}\n" if inner else f"{name} {_num(value)}\n"


class FastPrometheusMetricReader(PrometheusMetricReader):
    """A ``PrometheusMetricReader`` that also renders its own text exposition in one pass.

    ``REGISTRY.collect()`` keeps working through the inherited collector. :meth:`render_text`
    triggers one SDK collection (through ``_collect``, so hooks such as the HTTP layer's lean
    histogram merge their data in) and renders it directly, without building families.
    """

    def __init__(self, *args: Any, max_cached_series: int = DEFAULT_MAX_CACHED_SERIES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        collection.install(self)  # before a MeterProvider builds this reader's storage from it
        self._capture = threading.local()
        self._render_lock = threading.Lock()
        self._renderer = _Renderer(self._collector, max_cached_series)
        _FAST_COLLECTORS[self._collector] = self

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        box = getattr(self._capture, "box", None)
        if box is not None:  # a render_text() on this thread: the data is for it alone
            if metrics_data is not None:
                box.append(metrics_data)
            return
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)

    def render_text(self) -> str:
        """This reader's part of the exposition: what ``generate_latest`` prints for its collector."""
        with self._render_lock:
            box: list[MetricsData] = []
            self._capture.box = box
            try:
                self.collect()
            finally:
                self._capture.box = None
            return self._renderer.render(box)


def _registry_parts(registry: Any) -> tuple[Any, list[Any]] | None:
    """(registry-level target_info family or None, collectors in order), or None if unknown."""
    try:
        lock, collectors = registry._lock, registry._collector_to_names
    except AttributeError:
        return None
    with lock:
        ordered = list(collectors)
        info = registry._target_info_metric() if getattr(registry, "_target_info", None) else None
    return info, ordered


def generate_latest(registry: Any = prometheus_client.REGISTRY) -> bytes:
    """``prometheus_client.generate_latest(registry)``, with fast readers rendering their own part."""
    parts = _registry_parts(registry) if _FAST_COLLECTORS else None  # none exist on the public path
    if parts is None or not any(c in _FAST_COLLECTORS for c in parts[1]):
        return _prom_generate_latest(registry)
    info, collectors = parts
    out: list[str] = []
    slow: list[Any] = [_Families([info])] if info is not None else []
    for collector in collectors:
        reader = _FAST_COLLECTORS.get(collector)
        if reader is None:
            slow.append(collector)
            continue
        if slow:
            out.append(_prom_generate_latest(_Collectors(slow)).decode("utf-8"))
            slow = []
        out.append(reader.render_text())
    if slow:
        out.append(_prom_generate_latest(_Collectors(slow)).decode("utf-8"))
    return "".join(out).encode("utf-8")


def prometheus_reader() -> PrometheusMetricReader:
    """The reader behind ``GET /metrics``: the fast one, or the SDK's own when the fast path is off."""
    return FastPrometheusMetricReader() if enabled() else PrometheusMetricReader()


# --- targeted reads for the in-process consumers (dashboard history, alert evaluator) -----------

def collect_samples(names: set[str] | None = None, registry: object = None) -> Iterator[Any]:
    """The ``prometheus_client`` samples of ``registry`` (default ``REGISTRY``) named in ``names``.

    ``names=None`` is ``registry.collect()``. With names, only what can produce them is collected
    and translated: a plain collector whose described names miss ``names`` is not called, and the
    OTel exporter's collector, read through its :class:`FastPrometheusMetricReader` (one SDK
    collection, private to this call: a concurrent scrape neither steals it nor sees it),
    translates only the metrics whose Prometheus name starts one of ``names``; the samples are
    those ``registry.collect()`` would yield for the same names.
    """
    reg: Any = registry or prometheus_client.REGISTRY
    parts = _registry_collectors(reg) if names is not None and enabled() else None
    if parts is None:
        for family in reg.collect():
            yield from family.samples if names is None else (s for s in family.samples if s.name in names)
        return
    assert names is not None
    for collector, described in parts:
        if described and described.isdisjoint(names):
            continue
        families = _otel_families(collector, names)
        for family in (collector.collect() if families is None else families):
            for sample in family.samples:
                if sample.name in names:
                    yield sample


def _registry_collectors(reg: Any) -> list[tuple[Any, set[str]]] | None:
    try:
        with reg._lock:
            return [(c, set(n)) for c, n in reg._collector_to_names.items()]
    except AttributeError:
        return None


def _otel_families(collector: Any, names: set[str]) -> list[Any] | None:
    """The families of the OTel exporter's collector that can carry ``names``, or None (not one)."""
    if "target_info" in names:
        return None
    reader = _FAST_COLLECTORS.get(collector)
    capture = getattr(reader, "_capture", None)
    lock = getattr(reader, "_render_lock", None)
    translate = getattr(collector, "_translate_metric", None)
    resolve = getattr(collector, "_resolve_metric_name", None)
    if reader is None or capture is None or lock is None or translate is None or resolve is None:
        return None
    with lock:  # render_text()'s protocol: the SDK's data for this thread lands in ``box``
        box: list[Any] = []
        capture.box = box
        try:
            reader.collect()
        finally:
            capture.box = None
    wanted = _WANTED.get(frozenset(names)) or _WANTED.put(frozenset(names), {})
    families: dict[str, Any] = {}
    for data in box:
        for rm in data.resource_metrics:
            resource_attrs: dict[str, Any] | None = None
            for sm in rm.scope_metrics:
                scope_attrs: dict[str, Any] | None = None
                for metric in sm.metrics:
                    keep = wanted.get(metric.name)
                    if keep is None:
                        prefix = resolve(metric.name)
                        keep = wanted[metric.name] = any(n.startswith(prefix) for n in names)
                    if not keep:
                        continue
                    if resource_attrs is None:
                        resource_attrs = collector._build_resource_attrs(rm.resource)
                    if scope_attrs is None:
                        scope_attrs = collector._build_scope_attrs(sm.scope)
                    translate(metric=metric, scope_attrs=scope_attrs, resource_attrs=resource_attrs,
                              metric_family_id_metric_family=families)
    return list(families.values())


# frozenset of wanted sample names -> {OTel metric name: translate it?}
_WANTED: BoundedCache[frozenset[str], dict[str, bool]] = BoundedCache(16, on_full="clear")
