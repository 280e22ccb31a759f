"""Status vocabulary, outcome normalisation, aggregation and the health+json document."""

from __future__ import annotations

import time

import pytest

from sizewise_otel.health.format import aggregate, capability_status, document, http_status, public_document
from sizewise_otel.health.model import CheckResult, CheckSpec, Outcome, Status, redact


def result(name: str, status: Status, *, critical: bool = True, **outcome: object) -> CheckResult:
    return CheckResult(name, status, critical, Outcome(status, **outcome), 0.004, time.time(),
                       time.monotonic())


def test_status_order_words_and_ietf() -> None:
    assert Status.worst([Status.HEALTHY, Status.CRITICAL, Status.WARNING]) is Status.CRITICAL
    assert Status.worst([]) is Status.HEALTHY
    assert [s.rank for s in Status] == [0, 1, 2]
    assert [s.ietf for s in Status] == ["pass", "warn", "fail"]
    assert Status.coerce("PASS") is Status.HEALTHY
    assert Status.coerce("degraded") is Status.WARNING
    assert Status.coerce(False) is Status.CRITICAL
    with pytest.raises(ValueError):
        Status.coerce("maybe")


def test_outcome_of_accepts_what_user_checks_return() -> None:
    assert Outcome.of(None).status is Status.HEALTHY
    assert Outcome.of(True).status is Status.HEALTHY
    assert Outcome.of("fail").status is Status.CRITICAL
    o = Outcome.of({"status": "warn", "observed_value": 7, "observed_unit": "jobs", "queue": "q1"})
    assert (o.status, o.observed_value, o.observed_unit, o.details) == (Status.WARNING, 7, "jobs",
                                                                        {"queue": "q1"})
    with pytest.raises(TypeError):
        Outcome.of(3.5)


def test_aggregate_critical_beats_warning_beats_healthy() -> None:
    assert aggregate([result("a", Status.HEALTHY)])[0] is Status.HEALTHY
    assert aggregate([result("a", Status.HEALTHY), result("b", Status.WARNING)])[0] is Status.WARNING
    overall, summary = aggregate([result("a", Status.WARNING), result("b", Status.CRITICAL),
                                  result("c", Status.HEALTHY)])
    assert overall is Status.CRITICAL
    assert summary == {"healthy": 1, "warning": 1, "critical": 1, "total": 3}


def test_non_critical_failure_degrades_to_warning() -> None:
    r = result("redis", Status.CRITICAL, critical=False, reason="timeout")
    assert r.status is Status.CRITICAL and r.impact is Status.WARNING
    overall, summary = aggregate([result("db", Status.HEALTHY), r])
    assert overall is Status.WARNING
    assert summary["critical"] == 0 and summary["warning"] == 1
    assert http_status(overall) == 200 and http_status(Status.CRITICAL) == 503


def test_capability_status_required_and_optional() -> None:
    results = {"database": result("database", Status.HEALTHY),
               "redis": result("redis", Status.CRITICAL, critical=False)}
    calc = capability_status({"requires": ["database"], "optional": ["redis"]}, results)
    assert calc["status"] == "degraded" and calc["impaired_by"] == ["redis"]
    cache = capability_status({"requires": ["redis"], "optional": []}, results)
    assert cache["status"] == "unavailable"
    results["database"] = result("database", Status.CRITICAL)
    assert capability_status({"requires": ["database"], "optional": ["redis"]}, results)["status"] \
        == "unavailable"


def test_document_is_health_json_with_spec_fields() -> None:
    db = CheckSpec("database", lambda: None, component="database", measurement="responseTime",
                   component_type="datastore")
    cache = CheckSpec("redis", lambda: None, critical=False, component="redis",
                      measurement="responseTime", component_type="datastore")
    pairs = [
        (db, result("database", Status.HEALTHY, observed_value=1.5, observed_unit="ms", message="ok")),
        (cache, result("redis", Status.CRITICAL, critical=False, reason="timeout",
                       message="no answer within 2s", advice="Redis unreachable at h:1 — check REDIS_URL")),
    ]
    caps = {"calculate": {"requires": ["database"], "optional": ["redis"]},
            "cache": {"requires": ["redis"], "optional": []}}
    doc = document(pairs, now_wall=time.time(), now_mono=time.monotonic(),
                   service={"version": "1.2.3", "service_id": "svc"}, capabilities=caps)
    assert doc["status"] == "warn" and doc["overall_status"] == "warning"
    assert doc["summary"] == {"healthy": 1, "warning": 1, "critical": 0, "total": 2}
    assert set(doc["checks"]) == {"database:responseTime", "redis:responseTime"}
    entry = doc["checks"]["redis:responseTime"][0]
    assert entry["status"] == "fail" and entry["health"] == "critical" and entry["impact"] == "warning"
    assert entry["reason"] == "timeout" and "REDIS_URL" in entry["advice"]
    assert entry["affects"] == ["calculate", "cache"]
    assert entry["time"].endswith("Z")
    ok = doc["checks"]["database:responseTime"][0]
    assert ok["observedValue"] == 1.5 and ok["observedUnit"] == "ms" and "advice" not in ok
    assert doc["dependencies"]["calculate"]["status"] == "degraded"
    assert doc["dependencies"]["cache"]["status"] == "unavailable"
    assert doc["recommendations"][0]["check"] == "redis"
    assert "redis" in doc["output"]
    assert set(public_document(doc)) == {"status", "overall_status", "time"}


def test_redact_strips_credentials_and_bounds_length() -> None:
    text = redact("could not connect to postgresql://app:s3cret@db:5432/x password=hunter2")
    assert "s3cret" not in text and "hunter2" not in text and "db:5432" in text
    assert len(redact("x" * 1000)) == 300
