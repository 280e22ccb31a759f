"""Score rules, the table and the JSON document of ``sizewise-otel validate``."""

from __future__ import annotations

import json

from sizewise_otel.validate.model import CheckResult, Status, counts, score
from sizewise_otel.validate.report import as_json, dump_json, summary_line, table


def r(status: str, weight: float = 1.0, name: str = "c", fix: str = "") -> CheckResult:
    return CheckResult("components", name, Status(status), f"reason {name}", fix, 0.01, weight)


def test_score_weights_pass_warn_fail_and_ignores_skip() -> None:
    assert score([r("pass"), r("warn"), r("fail")]) == 50.0
    assert score([r("pass", 3), r("fail", 1)]) == 75.0
    assert score([r("pass"), r("skip"), r("skip")]) == 100.0
    assert score([r("warn", 2), r("pass", 2)]) == 75.0
    assert score([]) == 0.0
    assert score([r("skip")]) == 0.0


def test_counts_cover_every_status() -> None:
    assert counts([r("pass"), r("pass"), r("skip")]) == {"pass": 2, "warn": 0, "fail": 0, "skip": 1}


def test_table_shows_every_check_fix_and_score() -> None:
    results = [r("pass", name="alpha"), r("fail", name="beta", fix="do the beta thing"),
               r("warn", name="gamma", fix="consider gamma"), r("skip", name="delta", fix="pass --x")]
    text = table(results, url="http://127.0.0.1:1", min_score=90, width=120)
    for name in ("alpha", "beta", "gamma", "delta"):
        assert name in text
    assert "fix: do the beta thing" in text and "fix: consider gamma" in text
    assert "pass --x" not in text  # a skip's hint is not a fix
    assert "score 50.0 / 100 (minimum 90: BELOW MINIMUM)" in text
    assert summary_line(results, 40).startswith("score 50.0 / 100 (minimum 40: OK)")


def test_json_document_matches_results() -> None:
    results = [r("pass", 2, name="alpha"), r("fail", name="beta", fix="fix beta")]
    doc = json.loads(dump_json(as_json(results, url="http://x", prometheus=None, alertmanager=None,
                                       min_score=90, started_at="t", duration=1.0, local_source=None)))
    assert doc["version"] == 1
    assert doc["score"] == round(100 * 2 / 3, 1)
    assert doc["passed"] is False
    assert doc["counts"] == {"pass": 1, "warn": 0, "fail": 1, "skip": 0}
    assert [(c["name"], c["status"], c["fix"], c["weight"]) for c in doc["checks"]] == [
        ("alpha", "pass", "", 2.0), ("beta", "fail", "fix beta", 1.0)]
    assert set(doc["checks"][0]) == {"category", "name", "status", "reason", "fix", "duration_seconds",
                                     "weight", "details"}
