"""The routes instrument() adds that belong to no single component: ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

from sizewise_otel.fastpath import generate_latest
from sizewise_otel.web.auth import keyring_of


def metrics_router() -> APIRouter:
    router = APIRouter()

    # An exact route, not a mount: a mount answers /metrics with a 307 to /metrics/.
    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        if not keyring_of(request).metrics_allowed(request):
            return PlainTextResponse("missing or invalid metrics token\n", status_code=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        # The same text as prometheus_client.generate_latest(REGISTRY); the OTel reader's part is
        # rendered in one pass from the SDK's data (sizewise_otel/fastpath/exposition.py).
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router
