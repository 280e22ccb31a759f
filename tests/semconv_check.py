"""Check what a run emitted against the semantic conventions: every deviation becomes a finding.

Input is what tests/integration/semconv_conformance_app.py prints (the SDK's metric data, finished
spans, the resource's keys, the ``GET /metrics`` text). Output maps a *subject* to its finding; a
subject is ``check:name`` so the tables in tests/semconv_tables.py can name it:

- ``metric:N``     metric N is neither registered (non-deprecated) nor under ``sizewise.``
- ``unit:N``       N's unit differs from the registered one (or is ``%`` where semconv uses ratios)
- ``kind:N``       N's instrument kind differs from the registered one
- ``buckets:N``    N's histogram boundaries differ from the advised ones
- ``duplicate:N``  the ``sizewise.`` metric N shadows a registered metric (same name once un-prefixed)
- ``attribute:K``  key K (metric, span, span event or resource) is not registered, or deprecated,
  and not under ``sizewise.``
- ``prometheus:F`` the ``/metrics`` family F is not the Prometheus name of any metric the SDK holds
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.semconv_registry import Registry

NAMESPACE = "sizewise."
# Prefixes under which a sizewise.* metric, un-prefixed, may exist as a registered metric.
TWIN_PREFIXES = ("", "system.", "k8s.")
# Unit -> the suffix the OTel Prometheus exporters append (braced annotations add none).
PROM_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent", "1": "ratio"}
# Families every OTel Prometheus exporter adds beside the instruments.
PROM_OTEL_FAMILIES = frozenset({"target_info"})


@dataclass
class Finding:
    problem: str
    where: set[str] = field(default_factory=set)

    def __str__(self) -> str:
        return f"{self.problem} (in {', '.join(sorted(self.where))})"


class Findings(dict[str, Finding]):
    def add(self, subject: str, problem: str, where: str) -> None:
        self.setdefault(subject, Finding(problem)).where.add(where)


def _check_attribute(out: Findings, reg: Registry, key: str, where: str) -> None:
    if key.startswith(NAMESPACE):
        return
    entry = reg.attribute(key)
    if entry is None:
        out.add(f"attribute:{key}", "not a registered attribute and not under sizewise.", where)
    elif entry.deprecated:
        out.add(f"attribute:{key}", f"deprecated: {entry.deprecated}", where)


def _check_metric(out: Findings, reg: Registry, m: Mapping[str, Any], advised: Mapping[str, tuple[float, ...]],
                  where: str) -> None:
    name, unit, kind = m["name"], m["unit"], m["kind"]
    entry = reg.metrics.get(name)
    if name.startswith(NAMESPACE):
        if unit == "%":
            out.add(f"unit:{name}", "unit % (semconv states utilization as a ratio, unit 1)", where)
        bare = name[len(NAMESPACE):]
        for twin in (p + bare for p in TWIN_PREFIXES):
            if twin in reg.metrics:
                note = f" (deprecated: {reg.metrics[twin].deprecated})" if reg.metrics[twin].deprecated else ""
                out.add(f"duplicate:{name}", f"shadows the registered metric {twin}{note}", where)
                break
    elif entry is None:
        out.add(f"metric:{name}", "not a registered metric and not under sizewise.", where)
    elif entry.deprecated:
        out.add(f"metric:{name}", f"deprecated: {entry.deprecated}", where)
    if entry is not None and not entry.deprecated:
        if entry.unit is not None and entry.unit != unit:
            out.add(f"unit:{name}", f"unit {unit!r}, registered {entry.unit!r}", where)
        if entry.instrument is not None and entry.instrument != kind:
            out.add(f"kind:{name}", f"instrument {kind}, registered {entry.instrument}", where)
    if name in advised and m.get("buckets") is not None and tuple(m["buckets"]) != tuple(advised[name]):
        out.add(f"buckets:{name}", f"boundaries {list(m['buckets'])}, advised {list(advised[name])}", where)
    for key in m["attributes"]:
        _check_attribute(out, reg, key, where)


def prometheus_names(name: str, unit: str) -> set[str]:
    """The family names an OTel Prometheus exporter may give metric ``name`` (counters without _total)."""
    base = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    suffix = PROM_UNIT_SUFFIX.get(unit)
    return {base, f"{base}_{suffix}"} if suffix and not base.endswith(suffix) else {base}


def check(reg: Registry, run: Mapping[str, Any], advised: Mapping[str, tuple[float, ...]],
          families: Iterable[str], where: str) -> Findings:
    """Every finding for one run; ``where`` names the run (e.g. its instrumentation path)."""
    out = Findings()
    for m in run["metrics"]:
        _check_metric(out, reg, m, advised, f"{where}: metric {m['name']}")
    for span in run["spans"]:
        for key in span["attributes"]:
            _check_attribute(out, reg, key, f"{where}: spans of {span['scope']}")
        for event in span["events"]:
            for key in event["attributes"]:
                _check_attribute(out, reg, key, f"{where}: span event {event['name']}")
    for key in run["resource"]:
        _check_attribute(out, reg, key, f"{where}: resource")
    known = set().union(*(prometheus_names(m["name"], m["unit"]) for m in run["metrics"]))
    for family in families:
        if family not in known and family not in PROM_OTEL_FAMILIES:
            out.add(f"prometheus:{family}", "on /metrics but not the name of any metric the SDK holds",
                    f"{where}: /metrics")
    return out


def merge(*runs: Findings) -> Findings:
    out = Findings()
    for findings in runs:
        for subject, finding in findings.items():
            for where in finding.where:
                out.add(subject, finding.problem, where)
    return out


def reconcile(found: Findings, listed: Iterable[str], environment_dependent: Mapping[str, str],
              emitted: Iterable[str]) -> tuple[dict[str, Finding], list[str]]:
    """(findings no table lists, listed subjects no longer found).

    A listed subject in ``environment_dependent`` is excused when the metric it names was not emitted
    (the host did not offer it), never otherwise: a fixed name must leave the tables.
    """
    listed = set(listed)
    emitted = set(emitted)
    unexplained = {s: f for s, f in found.items() if s not in listed}
    stale = sorted(s for s in listed if s not in found
                   and not (s in environment_dependent and environment_dependent[s] not in emitted))
    return unexplained, stale
