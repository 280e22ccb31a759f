"""The ``PROMETHEUS_URL`` source: run a widget's PromQL through Prometheus' HTTP API.

The dashboard variables are substituted the way Grafana would: ``$job``/``$instance`` become
regexes (all by default), ``$__rate_interval`` a fixed window at least four scrape intervals long.
Every call has a timeout; a failure is reported, never raised into the page.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from sizewise_otel.dashboard.expr import Labels, labels_of

DEFAULT_RATE_INTERVAL = "2m"  # 4 x the spec's 30 s scrape interval


class PrometheusError(RuntimeError):
    pass


def substitute(expr: str, *, rate_interval: str = DEFAULT_RATE_INTERVAL, job: str = ".+",
               instance: str = ".+") -> str:
    return (expr.replace("$__rate_interval", rate_interval)
            .replace("$instance", instance).replace("$job", job))


class PrometheusSource:
    def __init__(self, url: str, *, timeout: float = 5.0, rate_interval: str = DEFAULT_RATE_INTERVAL,
                 job: str = ".+", instance: str = ".+",
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.rate_interval = rate_interval
        self.job = job
        self.instance = instance
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def render(self, expr: str) -> str:
        return substitute(expr, rate_interval=self.rate_interval, job=self.job, instance=self.instance)

    async def _get(self, path: str, params: dict[str, Any]) -> Any:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), transport=self._transport)
        try:
            response = await self._client.get(f"{self.url}{path}", params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"prometheus unreachable: {type(exc).__name__}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"prometheus error: {body.get('error', response.status_code)}")
        return body["data"]

    async def instant(self, expr: str) -> dict[Labels, float]:
        data = await self._get("/api/v1/query", {"query": self.render(expr)})
        if data.get("resultType") == "scalar":
            return {(): float(data["result"][1])}
        return {_labels(r["metric"]): float(r["value"][1]) for r in data.get("result", [])}

    async def range(self, expr: str, seconds: float, step: float,
                    end: float | None = None) -> dict[Labels, list[tuple[float, float]]]:
        end = time.time() if end is None else end
        data = await self._get("/api/v1/query_range", {
            "query": self.render(expr), "start": f"{end - seconds:.3f}", "end": f"{end:.3f}",
            "step": f"{step:g}"})
        return {_labels(r["metric"]): [(float(t), float(v)) for t, v in r.get("values", [])]
                for r in data.get("result", [])}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _labels(metric: dict[str, str]) -> Labels:
    return labels_of({k: v for k, v in metric.items() if k != "__name__"})
