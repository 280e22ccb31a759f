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


# What the load sends: (kind, share of requests, what a reader of the banner should expect).
# ``_one`` draws from this table, so the banner (``describe``) cannot drift from the traffic.
MIX: tuple[tuple[str, float, str], ...] = (
    ("calculate", 0.55, "HVAC calculations of all four types (repeats are cache hits)"),
    ("invalid", 0.10, "calculations with invalid input (422)"),
    ("lookup", 0.10, "calculation lookups, 1 in 5 for an unknown id (404)"),
    ("import", 0.05, "legacy CSV imports: 3 rows in 5 are malformed and hit a known parser bug "
                     "(500, on purpose: each one is captured by the error tracker)"),
    ("report", 0.08, "project reports"),
    ("open_session", 0.07, "session opens"),
    ("close_session", 0.05, "session closes, some for an unknown session (404)"),
)
IMPORT_GOOD_SHARE = 0.4


def _kind(roll: float) -> str:
    edge = 0.0
    for kind, share, _ in MIX:
        edge += share
        if roll < edge:
            return kind
    return MIX[-1][0]


def describe(rate: float, duration: float | None) -> list[str]:
    """The load in a few lines, for the demo's start banner."""
    how_long = f"for {duration:g} s" if duration is not None else "until Ctrl-C"
    lines = [f"about {rate:g} requests/s {how_long}:"]
    lines += [f"{share:>4.0%}  {text}" for _, share, text in MIX]
    errors_per_min = rate * 60 * dict((k, s) for k, s, _ in MIX)["import"] * (1 - IMPORT_GOOD_SHARE)
    lines.append(f"so about {errors_per_min:.0f} deliberate server errors a minute")
    return lines


async def _one(client: httpx.AsyncClient, rng: random.Random, state: dict) -> int:
    kind = _kind(rng.random())
    if kind == "calculate":
        resp = await client.post("/api/hvac/calculate", json=hvac.sample_request(rng),
                                 params={"project_id": state["project"]} if state.get("project") else None)
        if resp.status_code == 201:
            state["calc_ids"].append(resp.json()["id"])
            del state["calc_ids"][:-200]
    elif kind == "invalid":
        resp = await client.post("/api/hvac/calculate", json=hvac.invalid_sample(rng))
    elif kind == "lookup":
        ids = state["calc_ids"]
        cid = rng.choice(ids) if ids and rng.random() < 0.8 else rng.randint(10**8, 10**9)
        resp = await client.get(f"/api/hvac/calculations/{cid}")
    elif kind == "import":
        good = rng.random() < IMPORT_GOOD_SHARE
        row = f"round_duct,{rng.choice([800, 1200, 2000])},0.08" if good else \
            f"round_duct,{rng.choice(['12OO', 'n/a', ''])},0.1"
        resp = await client.post("/api/hvac/import", json={"csv": row})
    elif kind == "report":
        resp = await client.get(f"/api/projects/{state.get('project') or 1}/report")
    elif kind == "open_session":
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
