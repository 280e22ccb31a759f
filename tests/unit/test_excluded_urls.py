"""OTEL_PYTHON_FASTAPI_EXCLUDED_URLS / OTEL_PYTHON_EXCLUDED_URLS in instrument() mode, on both paths."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from sizewise_otel.instruments.request import excluded_urls, request_url
from tests.servers import ROOT, clean_env

SCRIPT = textwrap.dedent('''
    import json
    from fastapi import FastAPI
    from starlette.testclient import TestClient
    from sizewise_otel import instrument
    from sizewise_otel.settings import Settings

    app = FastAPI()

    @app.get("/internal/{n}")
    def internal(n: int) -> dict:
        return {"n": n}

    @app.get("/api/{n}")
    def api(n: int) -> dict:
        return {"n": n}

    instrument(app, settings=Settings(error_store_url="sqlite://"))
    with TestClient(app) as http:
        for n in range(3):
            assert http.get(f"/internal/{n}").status_code == 200
            assert http.get(f"/api/{n}").status_code == 200
        text = http.get("/metrics").text
    counts = {}
    for line in text.splitlines():
        if line.startswith("http_server_request_duration_seconds_count"):
            route = line.split('http_route="')[1].split('"')[0]
            counts[route] = float(line.rsplit(" ", 1)[1])
    print(json.dumps(counts))
''')


@pytest.mark.parametrize("fastpath", ["1", "0"])
@pytest.mark.parametrize("variable", ["OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"])
def test_excluded_urls_are_not_measured(fastpath: str, variable: str) -> None:
    env = clean_env({variable: "/internal/\\d+$,healthz", "SIZEWISE_FASTPATH": fastpath})
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts == {"/api/{n}": 3.0}


def test_no_variable_no_exclusion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", raising=False)
    monkeypatch.delenv("OTEL_PYTHON_EXCLUDED_URLS", raising=False)
    assert excluded_urls() is None


def test_the_fastapi_variable_wins_and_matches_the_full_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "/api")
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "^https://svc:8443/admin")
    rule = excluded_urls()
    assert rule is not None
    scope = {"scheme": "https", "server": ("svc", 8443), "root_path": "", "path": "/admin/users"}
    assert request_url(scope) == "https://svc:8443/admin/users" and rule.url_disabled(request_url(scope))
    assert not rule.url_disabled(request_url({**scope, "path": "/api/x"}))
