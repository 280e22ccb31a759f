"""The conformance machinery without servers: the registry walk, the checks, the tables and their doc."""

from __future__ import annotations

from typing import Any

from tests import semconv_tables as tables
from tests.semconv_check import check, prometheus_names, reconcile
from tests.semconv_registry import _entries, registry

KNOWN_CHECKS = ("metric", "unit", "kind", "buckets", "duplicate", "attribute", "prometheus")
HTTP = "http.server.request.duration"


def _metric(name: str, unit: str, kind: str, attributes: tuple[str, ...] = (),
            buckets: tuple[float, ...] | None = None) -> dict[str, Any]:
    return {"name": name, "unit": unit, "kind": kind, "attributes": list(attributes),
            "buckets": list(buckets) if buckets is not None else None}


def _run(metrics: list[dict[str, Any]], span_keys: tuple[str, ...] = (), event_keys: tuple[str, ...] = (),
         resource: tuple[str, ...] = ("service.name",)) -> dict[str, Any]:
    return {"metrics": metrics, "resource": list(resource),
            "spans": [{"scope": "s", "attributes": list(span_keys),
                       "events": [{"name": "exception", "attributes": list(event_keys)}]}]}


CONFORMING = _run([_metric(HTTP, "s", "histogram", ("http.route", "http.request.method"),
                           tables.ADVISED_BUCKETS[HTTP]),
                   _metric("sizewise.hvac.calculations", "{calculation}", "counter", ("sizewise.hvac.type",))],
                  span_keys=("http.route", "url.path", "http.request.header.x-request-id"),
                  event_keys=("exception.type", "exception.message", "sizewise.error.id"))


def test_the_doc_carries_the_tables_as_generated() -> None:
    text = tables.DOC.read_text(encoding="utf-8")
    assert tables.render() in text, "docs/semconv.md is out of step with tests/semconv_tables.py: " \
                                    "run `python -m tests.semconv_tables`"


def test_tables_are_consistent() -> None:
    assert not set(tables.DEVIATIONS) & set(tables.NOT_YET_CONFORMING)
    assert set(tables.NOT_YET_CONFORMING.values()) | set(tables.PROMTOOL_EXPECTED.values()) <= set(tables.BULLETS)
    assert set(tables.ENVIRONMENT_DEPENDENT) <= set(tables.NOT_YET_CONFORMING) | set(tables.DEVIATIONS)
    for subject in [*tables.DEVIATIONS, *tables.NOT_YET_CONFORMING]:
        assert subject.split(":", 1)[0] in KNOWN_CHECKS, subject
    assert all(why.strip() for why in [*tables.DEVIATIONS.values(), *tables.PROMTOOL_DEVIATIONS.values()])
    assert not set(tables.PROMTOOL_EXPECTED) & set(tables.PROMTOOL_DEVIATIONS)
    for bounds in tables.ADVISED_BUCKETS.values():
        assert list(bounds) == sorted(set(bounds))


def test_registry_reads_names_units_kinds_and_deprecations() -> None:
    reg = registry()
    entry = reg.metrics[HTTP]
    assert (entry.stable, entry.instrument, entry.unit, entry.deprecated) == (True, "histogram", "s", None)
    assert reg.attribute("exception.escaped").deprecated  # type: ignore[union-attr]
    assert reg.attribute("http.route").deprecated is None  # type: ignore[union-attr]
    assert reg.attribute("http.request.header.content-type").template  # type: ignore[union-attr]
    assert reg.attribute("calculation_type") is None
    assert reg.attribute("http.request") is None  # a namespace, not an attribute
    assert len(reg.metrics) > 100 and len(reg.attributes) > 500


def test_registry_parses_a_constant_and_its_docstring() -> None:
    source = 'A_B: Final = "a.b"\n"""\nDeprecated: Replaced by `c`.\n"""\n\nX: Final = "x"\n' \
             '"""\nWhat x is\nInstrument: counter\nUnit: {x}\n"""\ndef f(): pass\n'
    a, x = _entries(source, stable=False)
    assert (a.name, a.deprecated, a.instrument) == ("a.b", "Replaced by `c`.", None)
    assert (x.name, x.deprecated, x.instrument, x.unit) == ("x", None, "counter", "{x}")


def test_a_conforming_run_has_no_findings() -> None:
    families = ["target_info", "http_server_request_duration_seconds", "sizewise_hvac_calculations"]
    assert dict(check(registry(), CONFORMING, tables.ADVISED_BUCKETS, families, "t")) == {}


def test_every_kind_of_deviation_is_found() -> None:
    run = _run([_metric("foo.requests", "1", "counter", ("outcome",)),
                _metric(HTTP, "ms", "counter", ("state",), (0.001, 1.0)),
                _metric("sizewise.cpu.usage", "%", "gauge"),
                _metric("sizewise.system.network.io", "By", "counter"),
                _metric("db.client.connections.usage", "{connection}", "updowncounter")],
               span_keys=("db.statement",), event_keys=("exception.escaped",), resource=("hostname",))
    families = ["rogue", "foo_requests_ratio", "sizewise_cpu_usage_percent"]
    found = check(registry(), run, tables.ADVISED_BUCKETS, families, "t")
    assert set(found) == {
        "metric:foo.requests", "attribute:outcome", "unit:" + HTTP, "kind:" + HTTP, "buckets:" + HTTP,
        "attribute:state", "unit:sizewise.cpu.usage", "duplicate:sizewise.system.network.io",
        "metric:db.client.connections.usage", "attribute:db.statement", "attribute:exception.escaped",
        "attribute:hostname", "prometheus:rogue"}
    assert "deprecated" in found["attribute:exception.escaped"].problem
    assert found["attribute:outcome"].where == {"t: metric foo.requests"}


def test_prometheus_names_follow_the_exporters_unit_suffixes() -> None:
    assert prometheus_names(HTTP, "s") == {"http_server_request_duration", "http_server_request_duration_seconds"}
    assert "sizewise_cpu_usage_percent" in prometheus_names("sizewise.cpu.usage", "%")
    assert prometheus_names("sizewise.hvac.calculations", "{calculation}") == {"sizewise_hvac_calculations"}


def test_reconcile_fails_new_names_and_stale_entries() -> None:
    found = check(registry(), _run([_metric("sizewise.x", "1", "gauge", ("outcome", "source"))]),
                  {}, [], "t")
    unexplained, stale = reconcile(found, ["attribute:outcome", "attribute:fixed", "duplicate:sizewise.y"],
                                   {"duplicate:sizewise.y": "sizewise.y"}, ["sizewise.x"])
    assert set(unexplained) == {"attribute:source"}
    assert stale == ["attribute:fixed"]  # sizewise.y was not emitted here: excused, not stale
    _, stale = reconcile(found, ["duplicate:sizewise.y"], {"duplicate:sizewise.y": "sizewise.y"}, ["sizewise.y"])
    assert stale == ["duplicate:sizewise.y"]  # emitted and no longer flagged: fixed, so stale
