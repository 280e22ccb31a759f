"""Everything the checks share: the target URLs, one bounded HTTP client, cached answers.

Every request has a short timeout (``TIMEOUT``); once the service has proved unreachable the
remaining requests fail at once instead of each waiting out its own timeout.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from sizewise_otel.catalog import Tier
from sizewise_otel.validate.local import ServiceView, is_loopback_host, service_view

TIMEOUT = httpx.Timeout(5.0, connect=2.0)
SETTLE_SECONDS = float(Tier.FAST) + 1.0  # one collection tier of the observable gauges, and a margin


class Unreachable(httpx.TransportError):
    """The service did not answer earlier in this run; no point waiting again."""


@dataclass
class Context:
    url: str
    api_key: str | None = None
    prometheus: str | None = None
    alertmanager: str | None = None
    metrics_token: str | None = None
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=TIMEOUT,
                                                                      follow_redirects=False))
    token: str = field(default_factory=lambda: "swv" + secrets.token_hex(6))  # this run's canary
    cache: dict[str, Any] = field(default_factory=dict)
    unreachable: str | None = None
    settle_seconds: float = SETTLE_SECONDS
    _view: ServiceView | None = None

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if self.prometheus:
            self.prometheus = self.prometheus.rstrip("/")
        if self.alertmanager:
            self.alertmanager = self.alertmanager.rstrip("/")

    # --- addressing -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def view(self) -> ServiceView:
        """The service's configuration as far as this machine can see it (loopback URLs only)."""
        if self._view is None:
            self._view = service_view(self.port, self.loopback)
        return self._view

    # --- HTTP -------------------------------------------------------------------------------

    def auth_headers(self, key: str | None = None) -> dict[str, str]:
        key = self.api_key if key is None else key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def request(self, method: str, path: str, *, auth: bool = True, key: str | None = None,
                headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """A request to the service, with the API key unless ``auth=False``."""
        if self.unreachable:
            raise Unreachable(self.unreachable)
        hdrs = {**(self.auth_headers(key) if auth else {}), **(headers or {})}
        try:
            return self.client.request(method, self.url + path, headers=hdrs, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self.unreachable = f"{self.url} is unreachable ({type(exc).__name__})"
            raise

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def cached_get(self, path: str, **kwargs: Any) -> httpx.Response:
        key = f"GET {path} {sorted(kwargs.items())!r}"
        if key not in self.cache:
            self.cache[key] = self.get(path, **kwargs)
        return self.cache[key]

    def metrics(self, *, fresh: bool = False) -> tuple[httpx.Response, float]:
        """``GET /metrics`` (with the metrics token when one is known) and how long it took."""
        if fresh or "metrics" not in self.cache:
            token = self.metrics_token or self.view.metrics_token
            t0 = time.perf_counter()
            resp = self.get("/metrics", auth=False, headers={"Authorization": f"Bearer {token}"} if token else None)
            self.cache["metrics"] = (resp, time.perf_counter() - t0)
        return self.cache["metrics"]

    def metrics_until(self, done: Callable[[httpx.Response], bool]) -> httpx.Response:
        """Scrape until ``done(resp)`` or ``settle_seconds`` passed; returns the last scrape.

        Observable gauges are evaluated at most once per collection tier (5 s): right after start
        a series can be missing for one tier, so a missing series is looked for again before it
        counts as missing.
        """
        deadline = time.monotonic() + self.settle_seconds
        while True:
            resp, _ = self.metrics(fresh=True)
            if resp.status_code != 200 or done(resp) or time.monotonic() >= deadline:
                return resp
            time.sleep(0.5)

    def external(self, base: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to Prometheus or Alertmanager."""
        return self.client.get(base + path, **kwargs)

    def prom_query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises ``ValueError`` with Prometheus' message on a bad expression."""
        assert self.prometheus
        resp = self.external(self.prometheus, "/api/v1/query", params={"query": expr})
        body = resp.json()
        if resp.status_code != 200 or body.get("status") != "success":
            raise ValueError(body.get("error") or f"HTTP {resp.status_code}")
        result = body["data"]["result"]
        return result if isinstance(result, list) else [result]

    def close(self) -> None:
        self.client.close()
