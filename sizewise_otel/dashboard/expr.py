"""Widget queries as small expression trees: one definition, two evaluators.

``Expr.promql()`` renders the PromQL a Grafana panel (or ``PROMETHEUS_URL``) runs; ``Expr.evaluate()``
computes the same thing in-process from recent samples of this process's own metrics. Only the
subset of PromQL the widgets need is modelled: selectors, ``rate``/``increase``, aggregations,
``histogram_quantile``, arithmetic (one-to-one, or ``on (...) group_left``), comparisons,
``clamp_min``/``clamp_max``, ``label_replace`` tags, ``or`` and ``or vector(0)``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
Vector = dict[Labels, float]

RATE_INTERVAL = "$__rate_interval"
SCOPE_MATCHERS = ('job=~"$job"', 'instance=~"$instance"')


def labels_of(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


@dataclass
class Samples:
    """What ``evaluate`` reads: timestamped snapshots of every raw series, oldest first."""

    snapshots: Sequence[tuple[float, Mapping[str, Mapping[Labels, float]]]]
    _increases: dict[str, dict[Labels, tuple[float, float]]] = field(default_factory=dict)

    def latest(self, name: str) -> Mapping[Labels, float]:
        return self.snapshots[-1][1].get(name, {}) if self.snapshots else {}

    def window(self, name: str) -> Iterable[tuple[float, Mapping[Labels, float]]]:
        for ts, snap in self.snapshots:
            yield ts, snap.get(name, {})

    def increases(self, name: str) -> dict[Labels, tuple[float, float]]:
        """Per series: (increase over the window, seconds covered), counter resets handled.

        Computed once per metric and snapshot set, however many widgets read it."""
        cached = self._increases.get(name)
        if cached is not None:
            return cached
        first: dict[Labels, float] = {}
        last: dict[Labels, tuple[float, float]] = {}
        total: dict[Labels, float] = {}
        for ts, series in self.window(name):
            for lbl, value in series.items():
                seen = last.get(lbl)
                if seen is None:
                    first[lbl] = ts
                    total[lbl] = 0.0
                else:
                    prev = seen[1]
                    total[lbl] += value - prev if value >= prev else value  # counter reset
                last[lbl] = (ts, value)
        out = {lbl: (total[lbl], last[lbl][0] - t0) for lbl, t0 in first.items() if last[lbl][0] > t0}
        self._increases[name] = out
        return out


class Expr:
    def promql(self) -> str:
        raise NotImplementedError

    def evaluate(self, samples: Samples) -> Vector:
        raise NotImplementedError

    def metric_names(self) -> set[str]:
        return set().union(*(c.metric_names() for c in self.children()))

    def label_names(self) -> set[str]:
        return set().union(*(c.label_names() for c in self.children()))

    def children(self) -> tuple[Expr, ...]:
        return ()

    # arithmetic sugar: a / b, 100 * a, ...
    def __truediv__(self, other: Expr | float) -> Expr:
        return Bin("/", self, _wrap(other))

    def __mul__(self, other: Expr | float) -> Expr:
        return Bin("*", self, _wrap(other))

    def __rmul__(self, other: float) -> Expr:
        return Bin("*", _wrap(other), self)

    def __add__(self, other: Expr | float) -> Expr:
        return Bin("+", self, _wrap(other))

    def __sub__(self, other: Expr | float) -> Expr:
        return Bin("-", self, _wrap(other))

    def __rsub__(self, other: float) -> Expr:
        return Bin("-", _wrap(other), self)

    def or_zero(self) -> Expr:
        """Show 0 instead of "No data" where an empty result is healthy (nothing failed yet)."""
        return OrZero(self)


def _wrap(value: Expr | float) -> Expr:
    return value if isinstance(value, Expr) else Num(float(value))


@dataclass(frozen=True, eq=False)
class Num(Expr):
    value: float

    def promql(self) -> str:
        return f"{self.value:g}"

    def evaluate(self, samples: Samples) -> Vector:
        return {(): self.value}


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_OPS = {"=": lambda v, p: v == p, "!=": lambda v, p: v != p,
        "=~": lambda v, p: _regex(p).fullmatch(v) is not None,
        "!~": lambda v, p: _regex(p).fullmatch(v) is None}


@dataclass(frozen=True, eq=False)
class Sel(Expr):
    """An instant vector selector; job/instance matchers are added for the dashboard variables."""

    name: str
    matchers: tuple[tuple[str, str, str], ...] = ()  # (label, op, value)
    # A suffix some exporters add and others do not: the OTel collector's Prometheus exporter names
    # a unit-"1" gauge ``x_ratio`` where the in-process exporter says ``x``. Matches both.
    optional_suffix: str = ""

    def promql(self) -> str:
        parts = [*SCOPE_MATCHERS, *(f'{k}{op}"{v}"' for k, op, v in self.matchers)]
        if self.optional_suffix:
            name = f'{{__name__=~"{self.name}({self.optional_suffix})?", '
            return name + ", ".join(parts) + "}"
        return f"{self.name}{{{', '.join(parts)}}}"

    def metric_names(self) -> set[str]:
        return {self.name}

    def label_names(self) -> set[str]:
        return {k for k, _, _ in self.matchers}

    def matches(self, labels: Labels) -> bool:
        have = dict(labels)
        return all(_OPS[op](have.get(k, ""), v) for k, op, v in self.matchers)

    def evaluate(self, samples: Samples) -> Vector:
        return {lbl: v for lbl, v in samples.latest(self.name).items() if self.matches(lbl)}


def ratio(name: str, **matchers: str) -> Sel:
    """A unit-"1" gauge: ``name`` from the in-process exporter, ``name_ratio`` via the collector."""
    return Sel(name, m(name, **matchers).matchers, "_ratio")


def m(name: str, **matchers: str) -> Sel:
    """``m("x", outcome="success", code="~5..")``: a leading ``~`` makes a regex, ``!`` a negation."""
    out = []
    for key, raw in sorted(matchers.items()):
        op = "="
        if raw.startswith("!~"):
            op, raw = "!~", raw[2:]
        elif raw.startswith("~"):
            op, raw = "=~", raw[1:]
        elif raw.startswith("!"):
            op, raw = "!=", raw[1:]
        out.append((key, op, raw))
    return Sel(name, tuple(out))


@dataclass(frozen=True, eq=False)
class Rate(Expr):
    """``rate``/``increase`` over ``$__rate_interval`` (in-process: over the sample window)."""

    sel: Sel
    fn: str = "rate"

    def children(self) -> tuple[Expr, ...]:
        return (self.sel,)

    def promql(self) -> str:
        return f"{self.fn}({self.sel.promql()}[{RATE_INTERVAL}])"

    def evaluate(self, samples: Samples) -> Vector:
        per_series = samples.increases(self.sel.name)
        return {lbl: (inc if self.fn == "increase" else inc / seconds)
                for lbl, (inc, seconds) in per_series.items() if self.sel.matches(lbl)}


def rate(sel: Sel) -> Rate:
    return Rate(sel, "rate")


def increase(sel: Sel) -> Rate:
    return Rate(sel, "increase")


_AGG = {
    "sum": sum,
    "max": max,
    "min": min,
    "avg": lambda vs: sum(vs) / len(vs),
    "count": len,
}


@dataclass(frozen=True, eq=False)
class Agg(Expr):
    op: str
    inner: Expr
    by: tuple[str, ...] = ()

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)

    def label_names(self) -> set[str]:
        return set(self.by) | self.inner.label_names()

    def promql(self) -> str:
        by = f" by ({', '.join(self.by)})" if self.by else ""
        return f"{self.op}{by} ({self.inner.promql()})"

    def evaluate(self, samples: Samples) -> Vector:
        groups: dict[Labels, list[float]] = {}
        for lbl, value in self.inner.evaluate(samples).items():
            have = dict(lbl)
            key = tuple((k, have[k]) for k in sorted(self.by) if k in have)
            groups.setdefault(key, []).append(value)
        return {k: float(_AGG[self.op](vs)) for k, vs in groups.items()}


def sum_(inner: Expr, *by: str) -> Agg:
    return Agg("sum", inner, by)


def max_(inner: Expr, *by: str) -> Agg:
    return Agg("max", inner, by)


def avg_(inner: Expr, *by: str) -> Agg:
    return Agg("avg", inner, by)


def count_(inner: Expr, *by: str) -> Agg:
    return Agg("count", inner, by)


@dataclass(frozen=True, eq=False)
class Quantile(Expr):
    q: float
    inner: Expr  # must keep the ``le`` label

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)

    def promql(self) -> str:
        return f"histogram_quantile({self.q:g}, {self.inner.promql()})"

    def evaluate(self, samples: Samples) -> Vector:
        groups: dict[Labels, list[tuple[float, float]]] = {}
        for lbl, value in self.inner.evaluate(samples).items():
            have = dict(lbl)
            le = have.pop("le", None)
            if le is None:
                continue
            groups.setdefault(labels_of(have), []).append((float(le), value))
        out: Vector = {}
        for key, buckets in groups.items():
            value = bucket_quantile(self.q, buckets)
            if value is not None:
                out[key] = value
        return out


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile on cumulative (upper bound, count) pairs."""
    buckets = sorted(buckets)
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def quantile(q: float, name: str, *by: str, **matchers: str) -> Quantile:
    """p-quantile of a histogram (``name`` without suffix), optionally split ``by`` labels."""
    return Quantile(q, sum_(rate(m(f"{name}_bucket", **matchers)), "le", *by))


@dataclass(frozen=True, eq=False)
class Bin(Expr):
    """``lhs op rhs``; with ``on`` set, ``lhs op on (labels) group_left rhs``: many series on the
    left (e.g. per instance) against one per ``on`` group on the right (e.g. per job)."""

    op: str
    lhs: Expr
    rhs: Expr
    on: tuple[str, ...] = ()

    def children(self) -> tuple[Expr, ...]:
        return (self.lhs, self.rhs)

    def label_names(self) -> set[str]:
        return set(self.on) | super().label_names()

    def promql(self) -> str:
        if self.on:
            # "group_left (" would open group_left's label list: name the (empty) list first.
            rhs = _paren(self.rhs)
            rhs = f"() {rhs}" if rhs.startswith("(") else rhs
            return f"{_paren(self.lhs)} {self.op} on ({', '.join(self.on)}) group_left {rhs}"
        return f"({self.lhs.promql()}) {self.op} ({self.rhs.promql()})" if not (
            isinstance(self.lhs, Num) or isinstance(self.rhs, Num)
        ) else f"{_paren(self.lhs)} {self.op} {_paren(self.rhs)}"

    def evaluate(self, samples: Samples) -> Vector:
        left, right = self.lhs.evaluate(samples), self.rhs.evaluate(samples)
        if isinstance(self.lhs, Num):
            return {k: _apply(self.op, self.lhs.value, v) for k, v in right.items()}
        if isinstance(self.rhs, Num):
            return {k: _apply(self.op, v, self.rhs.value) for k, v in left.items()}
        if self.on:
            by_group = {_project(k, self.on): v for k, v in right.items()}
            return {k: _apply(self.op, v, by_group[g]) for k, v in left.items()
                    if (g := _project(k, self.on)) in by_group}
        return {k: _apply(self.op, v, right[k]) for k, v in left.items() if k in right}


def _project(labels: Labels, names: tuple[str, ...]) -> Labels:
    return tuple((k, v) for k, v in labels if k in names)


def per_group(op: str, lhs: Expr, rhs: Expr, *on: str) -> Bin:
    """``lhs op on (on...) group_left rhs``: e.g. each instance's rate over its job's total."""
    return Bin(op, lhs, rhs, tuple(on))


def _paren(e: Expr) -> str:
    simple = Num | Sel | Agg | Rate | Quantile | ClampMin | ClampMax | Tag | ThisProcess
    return e.promql() if isinstance(e, simple) else f"({e.promql()})"


def _apply(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b else math.nan
    if op == ">":
        return a if a > b else math.nan
    raise ValueError(op)


@dataclass(frozen=True, eq=False)
class OrZero(Expr):
    inner: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)

    def promql(self) -> str:
        return f"{_paren(self.inner)} or vector(0)"

    def evaluate(self, samples: Samples) -> Vector:
        return self.inner.evaluate(samples) or {(): 0.0}


@dataclass(frozen=True, eq=False)
class Filter(Expr):
    """``expr > value``: keep the series above a threshold (e.g. failing health checks).

    ``as_bool`` renders ``expr > bool value``: every series kept, as 1 (above) or 0, so a sum over
    it counts without the ``or vector(0)`` an empty filter result would need."""

    inner: Expr
    above: float
    as_bool: bool = False

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)

    def promql(self) -> str:
        op = "> bool" if self.as_bool else ">"
        return f"{_paren(self.inner)} {op} {self.above:g}"

    def evaluate(self, samples: Samples) -> Vector:
        inner = self.inner.evaluate(samples)
        if self.as_bool:
            return {k: float(v > self.above) for k, v in inner.items()}
        return {k: v for k, v in inner.items() if v > self.above}


@dataclass(frozen=True, eq=False)
class ClampMin(Expr):
    """``clamp_min(expr, floor)``: a denominator that may be 0 when nothing happened at all."""

    inner: Expr
    floor: float

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)

    def promql(self) -> str:
        return f"clamp_min({self.inner.promql()}, {self.floor:g})"

    def evaluate(self, samples: Samples) -> Vector:
        return {k: max(v, self.floor) for k, v in self.inner.evaluate(samples).items()}


@dataclass(frozen=True, eq=False)
class ClampMax(Expr):
    """``clamp_max(expr, ceiling)``: e.g. "days until full" capped where a projection stops meaning much."""

    inner: Expr
    ceiling: float

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)

    def promql(self) -> str:
        return f"clamp_max({self.inner.promql()}, {self.ceiling:g})"

    def evaluate(self, samples: Samples) -> Vector:
        return {k: min(v, self.ceiling) for k, v in self.inner.evaluate(samples).items()}


@dataclass(frozen=True, eq=False)
class Tag(Expr):
    """``label_replace(expr, "label", "value", "", "")``: name the series of one of several parts."""

    inner: Expr
    label: str
    value: str

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)

    def promql(self) -> str:
        return f'label_replace({self.inner.promql()}, "{self.label}", "{self.value}", "", "")'

    def evaluate(self, samples: Samples) -> Vector:
        return {labels_of({**dict(k), self.label: self.value}): v
                for k, v in self.inner.evaluate(samples).items()}


@dataclass(frozen=True, eq=False)
class Union(Expr):
    """``a or b``: both parts' series in one result (not a fallback: each part is real data)."""

    lhs: Expr
    rhs: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.lhs, self.rhs)

    def promql(self) -> str:
        return f"{_paren(self.lhs)} or {_paren(self.rhs)}"

    def evaluate(self, samples: Samples) -> Vector:
        left = self.lhs.evaluate(samples)
        return {**{k: v for k, v in self.rhs.evaluate(samples).items() if k not in left}, **left}


@dataclass(frozen=True, eq=False)
class ThisProcess(Expr):
    """PromQL from ``inner``; in-process the answer is the one live process asking: 1.

    For instance counts: Prometheus counts instances from ``target_info``, while the embedded
    dashboard is by definition one running instance (and reading ``target_info`` in-process would
    force the exporter's slow full collection on every sample)."""

    inner: Expr

    def promql(self) -> str:
        return self.inner.promql()

    def label_names(self) -> set[str]:
        return self.inner.label_names()

    def evaluate(self, samples: Samples) -> Vector:
        return {(): 1.0}


@dataclass(frozen=True, eq=False)
class Raw(Expr):
    """Hand-written PromQL for widgets a user adds, with an optional in-process function."""

    expr: str
    names: frozenset[str] = field(default_factory=frozenset)
    labels: frozenset[str] = field(default_factory=frozenset)

    def promql(self) -> str:
        return self.expr

    def metric_names(self) -> set[str]:
        return set(self.names)

    def label_names(self) -> set[str]:
        return set(self.labels)

    def evaluate(self, samples: Samples) -> Vector:
        return {}


def fallbacks(expr: Expr) -> list[Expr]:
    """The parts of ``expr`` behind an ``or vector(0)``: what must exist for the panel to mean anything."""
    found = [expr.inner] if isinstance(expr, OrZero) else []
    for child in expr.children():
        found += fallbacks(child)
    return found


def clean(vector: Vector) -> Vector:
    """Drop NaN/inf results (division by zero before any traffic)."""
    return {k: v for k, v in vector.items() if math.isfinite(v)}
