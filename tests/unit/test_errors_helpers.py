"""Shared by the error-tracker tests: an app with three error sites, the PII corpus, span capture.

Also a uvicorn factory (``make_app``) for the subprocess tests: settings come from the environment.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from sizewise_otel import instrument
from sizewise_otel.errors import ErrorContext, get_error_tracker, reset_error_tracker
from sizewise_otel.settings import Settings, load_settings
from sizewise_otel.telemetry import get_telemetry

VIEWER_KEY = "viewer-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
VIEWER = {"Authorization": f"Bearer {VIEWER_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TRACEPARENT = "00-{trace}-00f067aa0ba902b7-01"

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJqYW5lIiwicm9sZSI6InN1cGVydXNlciJ9."
       "Xk1bq8dZ2kXzRfk3s9pT6ZkQ0Jt2mO4oWvC1uYxV8aE")
PII = {
    "email": "jane.doe+vip@example.com",
    "jwt": JWT,
    "card": "4111 1111 1111 1111",
    "card_dashes": "5500-0000-0000-0004",
    "card_plain": "4012888888881881",
    "password": "hunter2-Secret!",
    "bearer": "s3cr3t-t0ken-value-987",
    "stripe": "sk_live_51HxYzAbCdEfGh1234",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "db_password": "pa55w0rd-xyz",
}
# What must never be found anywhere: each secret, and the distinctive part of the JWT.
NEEDLES = [*PII.values(), "jane.doe", "4111111111111111", "eyJzdWIiOiJqYW5lIiwicm9sZSI6InN1cGVydXNlciJ9"]


def leaked(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


def pii_message(n: int) -> str:
    return (f"charge {n} failed for {PII['email']} card {PII['card']} / {PII['card_dashes']} / "
            f"{PII['card_plain']} jwt {PII['jwt']} with {{'password': '{PII['password']}'}} "
            f"key {PII['stripe']} aws {PII['aws']} "
            f"dsn postgresql://app:{PII['db_password']}@db:5432/hvac")


class PaymentDeclined(Exception):
    pass


def test_settings(store_url: str, **overrides: Any) -> Settings:
    return load_settings(error_store_url=store_url,
                         sizewise_api_keys=f"viewer:{VIEWER_KEY},admin:{ADMIN_KEY}",
                         otel_traces_sampler="always_on", **overrides)


test_settings.__test__ = False  # type: ignore[attr-defined]


def build_app(settings: Settings) -> FastAPI:
    """Three code sites whose messages vary in ids, emails and numbers; a manual capture; a 503."""
    reset_error_tracker()
    app = FastAPI(telemetry={"metrics": False})  # not instrumented: keep it out of the shared registry

    @app.get("/calc/duct/{duct_id}")
    async def duct(duct_id: int) -> dict[str, Any]:
        raise ValueError(f"duct {duct_id} too small for user{duct_id}@example.com: {duct_id * 1.5} cfm")

    @app.get("/calc/load/{room}")
    async def load(room: str) -> dict[str, Any]:
        raise KeyError(f"room {room} missing, request 6f1c2a9e-1b7d-4c1e-9f3a-{int(room) % 10**12:012d}")

    @app.post("/billing/{account}")
    async def billing(account: int) -> dict[str, Any]:
        raise PaymentDeclined(pii_message(account))

    @app.post("/manual")
    async def manual(request: Request) -> dict[str, Any]:
        try:
            raise PaymentDeclined(pii_message(1))
        except PaymentDeclined as exc:
            error_id = get_error_tracker().capture_error(exc, ErrorContext(
                user_id=PII["email"], endpoint="/manual", method="POST",
                headers={"Authorization": f"Bearer {PII['bearer']}"},
                extra={"password": PII["password"], "card": PII["card"], "note": pii_message(2),
                       "profile": {"email": PII["email"], "token": PII["jwt"]}}))
        return {"error_id": error_id}

    @app.get("/ok")
    async def ok() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse({"detail": "down"}, status_code=503)

    instrument(app, settings=settings)
    return app


def make_app() -> FastAPI:
    """uvicorn --factory entry point: settings from the environment."""
    return build_app(test_settings(load_settings().error_store_url))


_exporter: InMemorySpanExporter | None = None


def span_exporter() -> InMemorySpanExporter:
    """An in-memory exporter on the process's tracer provider (the one instrumented apps use)."""
    global _exporter
    if _exporter is None:
        _exporter = InMemorySpanExporter()
        get_telemetry().tracer_provider.add_span_processor(SimpleSpanProcessor(_exporter))
    return _exporter


def spans_text(spans: Any) -> str:
    parts = []
    for span in spans:
        parts.append(repr(dict(span.attributes or {})))
        parts.append(repr(span.status.description))
        for ev in span.events:
            parts.append(ev.name + repr(dict(ev.attributes or {})))
    return "\n".join(parts)


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


