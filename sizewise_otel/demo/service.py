"""The SizeWise HVAC demo service, instrumented with one ``instrument()`` call."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Annotated, Any

import httpx
from fastapi import Body, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from sizewise_otel.catalog import CALC_OUTCOME, CALC_TYPE
from sizewise_otel.demo import hvac
from sizewise_otel.demo.limits import BodyLimitMiddleware
from sizewise_otel.demo.materials import ROUGHNESS_FT
from sizewise_otel.demo.sessions import SessionStore
from sizewise_otel.demo.store import Store, create_engine, create_schema
from sizewise_otel.instrumentation import instrument
from sizewise_otel.instruments.cache import InstrumentedCache
from sizewise_otel.instruments.http_stats import CAPTURED_KEY
from sizewise_otel.settings import Settings, get_settings

CALCULATE_PATH = "/api/hvac/calculate"


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class ImportIn(BaseModel):
    """A legacy CSV row ``type,airflow_cfm,friction_rate``. Its parser has a known bug (kept on
    purpose): a malformed number raises, so the demo serves a steady trickle of real 500s."""

    csv: str = Field(max_length=10_000)


def _redis_client(url: str) -> Any:
    if not url:
        return None
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Short timeouts and no retries: a hung Redis must cost one short timeout, and the cache's
    # breaker does the rest (redis-py's default retries multiply the timeout).
    return redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25,
                                health_check_interval=0, retry=Retry(NoBackoff(), 0))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = create_engine(settings.database_url)
    create_schema(engine)
    redis_client = _redis_client(settings.redis_url)
    app = FastAPI(title="SizeWise HVAC demo", version=settings.service_version)
    app.add_middleware(BodyLimitMiddleware)
    dependencies = {"materials": settings.materials_service_url.rstrip("/") + "/livez"} \
        if settings.materials_service_url else None
    handle = instrument(app, engine=engine, redis=redis_client, settings=settings,
                        http_dependencies=dependencies)
    tel = handle.telemetry
    cache = InstrumentedCache(tel, redis_client)
    store = Store(engine)
    sessions = SessionStore(tel.instrument("sizewise.sessions.active"))
    calculations = tel.instrument("sizewise.hvac.calculations")
    durations = tel.instrument("sizewise.hvac.calculation.duration")
    materials_url = settings.materials_service_url.rstrip("/")
    http = httpx.AsyncClient(timeout=httpx.Timeout(1.0, connect=0.5))
    app.state.demo = {"cache": cache, "store": store, "sessions": sessions, "engine": engine,
                      "redis": redis_client, "http": http}

    async def roughness(material: str) -> float:
        """Ask the materials service (the mesh call); fall back to the local table if it's down."""
        if materials_url:
            try:
                resp = await http.get(f"{materials_url}/materials/{material}")
                if resp.status_code == 200:
                    return float(resp.json()["roughness_ft"])
            except httpx.HTTPError:
                pass
        return ROUGHNESS_FT.get(material, ROUGHNESS_FT["galvanized_steel"])

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path == CALCULATE_PATH:
            calc_type = "unknown"
            try:
                body = json.loads(await request.body())
                if isinstance(body, dict) and body.get("calculation_type") in hvac.CALCULATION_TYPES:
                    calc_type = body["calculation_type"]
            except (ValueError, UnicodeDecodeError):
                pass
            calculations.add(1, {CALC_TYPE: calc_type, CALC_OUTCOME: "invalid"})
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # A dead database is reported (503, the exception captured once), not left to become a
        # bare 500 that also closes the client's keep-alive connection.
        if handle.tracker is not None:
            handle.tracker.capture_request_exception(exc, request.scope)
            request.scope[CAPTURED_KEY] = True
        return JSONResponse({"detail": "database unavailable, retry shortly"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers a body it cannot decode (e.g. not UTF-8) with a bare 400; it is a
        # malformed body like any other, so it gets the same 422 with a field error.
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            return await invalid(request, RequestValidationError(
                [{"loc": ("body",), "msg": "body is not valid UTF-8 JSON", "type": "json_invalid"}]))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.post(CALCULATE_PATH)
    async def calculate(
        request: Annotated[hvac.CalculationRequest, Body()],
        project_id: int | None = None,
        x_session_id: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        payload = request.model_dump(mode="json")
        calc_type = payload["calculation_type"]
        key = "calc:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        cached = cache.get(key)
        if cached is not None:
            result = json.loads(cached)
            calculations.add(1, {CALC_TYPE: calc_type, CALC_OUTCOME: "success"})
            return JSONResponse({"calculation_type": calc_type, "result": result, "cached": True})
        t0 = time.perf_counter()
        try:
            if calc_type == "pressure_drop" and getattr(request, "material", None):
                await roughness(request.material)  # type: ignore[attr-defined]
            result = hvac.compute(request)
        except ValueError as exc:
            calculations.add(1, {CALC_TYPE: calc_type, CALC_OUTCOME: "invalid"})
            return JSONResponse({"detail": [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]},
                                status_code=422)
        except Exception:
            calculations.add(1, {CALC_TYPE: calc_type, CALC_OUTCOME: "error"})
            raise
        durations.record(time.perf_counter() - t0, {CALC_TYPE: calc_type})
        calculations.add(1, {CALC_TYPE: calc_type, CALC_OUTCOME: "success"})
        cache.set(key, json.dumps(result).encode())
        calc_id = await _in_thread(store.save_calculation, project_id, calc_type, payload, result)
        return JSONResponse({"id": calc_id, "calculation_type": calc_type, "result": result,
                             "cached": False}, status_code=201)

    @app.get("/api/hvac/calculations/{calc_id}")
    def get_calculation(calc_id: int) -> JSONResponse:
        return found_or_404(store.get_calculation(calc_id), f"calculation {calc_id}")

    @app.post("/api/hvac/import")
    def import_row(body: ImportIn) -> JSONResponse:
        kind, airflow, friction = [*body.csv.split(","), "", "", ""][:3]
        # The legacy bug: float() of a malformed field raises ValueError -> 500.
        req = {"calculation_type": "round_duct", "airflow_cfm": float(airflow),
               "friction_rate_in_wg_per_100ft": float(friction)}
        return JSONResponse({"type": kind.strip(), "parsed": req})

    @app.post("/api/projects", status_code=201)
    def create_project(body: ProjectIn) -> JSONResponse:
        return JSONResponse(store.create_project(body.name), status_code=201)

    @app.get("/api/projects/{project_id}")
    def get_project(project_id: int) -> JSONResponse:
        return found_or_404(store.get_project(project_id), f"project {project_id}")

    @app.get("/api/projects/{project_id}/report")
    def project_report(project_id: int) -> JSONResponse:
        return found_or_404(store.project_report(project_id), f"project {project_id}")

    @app.post("/api/sessions", status_code=201)
    async def open_session() -> JSONResponse:
        return JSONResponse({"session_id": sessions.open()}, status_code=201)

    @app.delete("/api/sessions/{session_id}")
    async def close_session(session_id: str) -> JSONResponse:
        if not sessions.close(session_id):
            return JSONResponse({"detail": "session not found"}, status_code=404)
        return JSONResponse({"closed": session_id})

    return app


def found_or_404(found: dict[str, Any] | None, what: str) -> JSONResponse:
    if found is None:
        return JSONResponse({"detail": f"{what} not found"}, status_code=404)
    return JSONResponse(found)


async def _in_thread(fn: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
