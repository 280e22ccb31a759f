"""Realistic traffic for the demo: every calculation type, cache hits and misses, slow calls,
invalid input, unknown ids and a steady trickle of real server errors. Bounded in rate and time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from sizewise_otel.demo import hvac


@dataclass
class LoadStats:
    sent: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    failures: int = 0


async def _one(client: httpx.AsyncClient, rng: random.Random, state: dict) -> int:
    roll = rng.random()
    if roll < 0.55:
        resp = await client.post("/api/hvac/calculate", json=hvac.sample_request(rng),
                                 params={"project_id": state["project"]} if state.get("project") else None)
        if resp.status_code == 201:
            state["calc_ids"].append(resp.json()["id"])
            del state["calc_ids"][:-200]
    elif roll < 0.65:
        resp = await client.post("/api/hvac/calculate", json=hvac.invalid_sample(rng))
    elif roll < 0.75:
        ids = state["calc_ids"]
        cid = rng.choice(ids) if ids and rng.random() < 0.8 else rng.randint(10**8, 10**9)
        resp = await client.get(f"/api/hvac/calculations/{cid}")
    elif roll < 0.80:
        good = rng.random() < 0.4
        row = f"round_duct,{rng.choice([800, 1200, 2000])},0.08" if good else \
            f"round_duct,{rng.choice(['12OO', 'n/a', ''])},0.1"
        resp = await client.post("/api/hvac/import", json={"csv": row})
    elif roll < 0.88:
        resp = await client.get(f"/api/projects/{state.get('project') or 1}/report")
    elif roll < 0.95:
        resp = await client.post("/api/sessions")
        if resp.status_code == 201:
            state["sessions"].append(resp.json()["session_id"])
    else:
        sid = state["sessions"].pop(0) if state["sessions"] else "unknown-session"
        resp = await client.delete(f"/api/sessions/{sid}")
    return resp.status_code


def _exclude_from_telemetry(client: httpx.AsyncClient) -> None:
    """The load generator is the service's visitor, not part of its mesh: keep its own client calls
    out of ``http.client.*`` (it runs in the demo's process when started by ``demo --load``)."""
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.uninstrument_client(client)
    except Exception:  # instrumentation absent or already off
        pass


async def run_load(base_url: str, *, rate: float = 20.0, duration: float | None = None,
                   concurrency: int = 4, seed: int | None = None, headers: dict | None = None) -> LoadStats:
    """Send about ``rate`` requests/s for ``duration`` seconds (forever if None)."""
    rng = random.Random(seed)
    stats = LoadStats()
    state: dict = {"calc_ids": [], "sessions": [], "project": None}
    deadline = None if duration is None else time.monotonic() + duration
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0, headers=headers) as client:
        _exclude_from_telemetry(client)
        try:
            resp = await client.post("/api/projects", json={"name": "Load test building"})
            state["project"] = resp.json().get("id") if resp.status_code == 201 else None
        except httpx.HTTPError:
            pass
        sem = asyncio.Semaphore(concurrency)
        interval = 1.0 / rate

        async def fire() -> None:
            async with sem:
                try:
                    status = await _one(client, rng, state)
                    stats.by_status[status] += 1
                except httpx.HTTPError:
                    stats.failures += 1

        tasks: set[asyncio.Task] = set()
        next_at = time.monotonic()
        while deadline is None or time.monotonic() < deadline:
            task = asyncio.create_task(fire())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            stats.sent += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks, timeout=10)
    return stats
