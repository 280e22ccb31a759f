"""Redis INFO gauges against a real Redis (its own server: maxmemory and evictions are set here)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from sizewise_otel.catalog import Tier, signal
from sizewise_otel.instruments import redis_info
from sizewise_otel.instruments.redis import instrument_redis
from sizewise_otel.instruments.redis_info import (
    EVICTED,
    LIMIT,
    LOOKUPS,
    USED,
    RedisInfoReader,
    server_attributes,
    watch_redis_server,
)
from sizewise_otel.instruments.registry import Undo
from tests import servers

VALUE = b"x" * 10_000


class Tel:
    """What instrument_redis needs of a Telemetry, with an in-memory metric reader."""

    def __init__(self, metrics_enabled: bool = True) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.meter = self.meter_provider.get_meter("test")
        self.tracer_provider = TracerProvider()
        self.settings = SimpleNamespace(metrics_collection_enabled=metrics_enabled, service_version="test",
                                        sizewise_db_root_spans=False)

    def instrument(self, name: str) -> Any:  # the command duration histogram (public path)
        return self.meter.create_histogram(name, unit="s")

    def points(self) -> dict[str, list[tuple[float, dict[str, Any]]]]:
        data = self.reader.get_metrics_data()
        out: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).extend(
                        (p.value, dict(p.attributes or {})) for p in metric.data.data_points
                        if hasattr(p, "value"))  # not the commands' duration histogram
        return out


@pytest.fixture(scope="module")
def server() -> Iterator[servers.Server]:
    with servers.redis_server() as srv:
        yield srv


@pytest.fixture
def client(server: servers.Server) -> Iterator[redis.Redis]:
    c = redis.Redis(port=server.port)
    c.config_set("maxmemory", 0)
    c.flushall()
    c.config_resetstat()
    yield c
    c.close()


def fill_until_evicting(c: redis.Redis) -> dict[str, Any]:
    """maxmemory about 2 MB above what the server uses now, allkeys-lru, then writes until it evicts."""
    c.config_set("maxmemory", int(c.info("memory")["used_memory"]) + 2_000_000)
    c.config_set("maxmemory-policy", "allkeys-lru")
    for i in range(2000):  # 20 MB at most: ten times the headroom
        c.set(f"k{i}", VALUE)
        if i % 50 == 0 and int(c.info("stats")["evicted_keys"]) > 0:
            break
    info = c.info()
    assert int(info["evicted_keys"]) > 0, "no eviction after 20 MB"
    return info


def by_result(points: list[tuple[float, dict[str, Any]]]) -> dict[str, float]:
    return {a["sizewise.cache.result"]: v for v, a in points}


def test_gauges_and_counters_read_the_real_info(client: redis.Redis, server: servers.Server) -> None:
    tel, undo = Tel(), Undo()
    instrument_redis(client, tel, undo)
    try:
        fill_until_evicting(client)
        for key in ("missing-1", "missing-2", "missing-3"):
            client.get(key)
        before = client.info()
        got = tel.points()
        after = client.info()
        attrs = {"server.address": "localhost", "server.port": server.port}
        assert got[LIMIT] == [(float(before["maxmemory"]), attrs)]
        # At maxmemory, the reader's own connection makes Redis evict a few more keys: the count
        # lies between the readings just before and after it.
        [(evicted, evicted_attrs)] = got[EVICTED]
        assert evicted_attrs == attrs and 0 < before["evicted_keys"] <= evicted <= after["evicted_keys"]
        assert by_result(got[LOOKUPS]) == {"hit": before["keyspace_hits"], "miss": before["keyspace_misses"]}
        assert before["keyspace_misses"] >= 3
        [(used, used_attrs)] = got[USED]
        # used_memory moves with client buffers between two INFO calls; the reading lies between
        # (within a margin of) the readings taken just before and after it, near maxmemory.
        low, high = sorted((before["used_memory"], after["used_memory"]))
        assert used_attrs == attrs and low * 0.95 <= used <= high * 1.05
        assert used >= 0.9 * before["maxmemory"]
    finally:
        undo.run()
    # Undone: the server is no longer read (the instruments stay, with nothing to report).
    assert not tel.points().get(USED)


def test_one_info_per_tier_shared_by_every_instrument(client: redis.Redis) -> None:
    now = [1000.0]
    reader = RedisInfoReader(30.0, clock=lambda: now[0])
    tel = Tel()
    reader.register(tel.meter)
    stop = reader.add(client)
    assert stop is not None

    def info_calls() -> int:
        return int(client.info("commandstats").get("cmdstat_info", {}).get("calls", 0))

    start = info_calls()
    first = tel.points()
    tel.points()  # a second collection within the tier
    assert reader.reads == 1
    assert info_calls() - start == 2  # the reader's one INFO, plus this test's first commandstats
    hits = by_result(first[LOOKUPS])
    client.set("a", "1")
    for _ in range(3):
        client.get("a")
    client.get("nope")
    now[0] += 29.0
    assert by_result(tel.points()[LOOKUPS]) == hits  # still the tier's reading
    now[0] += 1.0
    assert by_result(tel.points()[LOOKUPS]) == {"hit": hits["hit"] + 3, "miss": hits["miss"] + 1}
    assert reader.reads == 2
    stop()
    assert reader.servers == []


def test_catalog_tier_drives_the_reader() -> None:
    assert signal(USED).tier is Tier.MEDIUM
    assert {signal(n).tier for n in (USED, LIMIT, EVICTED, LOOKUPS)} == {Tier.MEDIUM}
    assert redis_info.reader_for(Tel()).interval == float(Tier.MEDIUM)


def test_no_maxmemory_means_no_limit_series(client: redis.Redis) -> None:
    tel, undo = Tel(), Undo()
    instrument_redis(client, tel, undo)
    try:
        got = tel.points()
        assert got[USED] and not got.get(LIMIT)
    finally:
        undo.run()


def test_two_clients_of_one_server_are_read_once(client: redis.Redis, server: servers.Server) -> None:
    other = redis.Redis(host="localhost", port=server.port, db=1)
    reader = RedisInfoReader(30.0)
    stop_a, stop_b = reader.add(client), reader.add(other)
    assert stop_a is not None and stop_b is not None
    assert len(reader.snapshot()) == 1 and reader.reads == 1
    stop_a()
    assert len(reader.servers) == 1  # the other client still needs it
    stop_b()
    assert reader.servers == []
    other.close()


def test_async_client_is_read_through_a_sync_probe(server: servers.Server) -> None:
    aclient = redis.asyncio.Redis(port=server.port)
    reader = RedisInfoReader(30.0)
    assert reader.add(aclient) is not None
    [(attrs, info)] = reader.snapshot()
    assert attrs == {"server.address": "localhost", "server.port": server.port}
    assert info.used_memory > 0


def _silent_listener() -> tuple[socket.socket, threading.Event]:
    """A port that accepts connections and never answers (a hung Redis)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    done = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        sock.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue
        for conn in held:
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return sock, done


@pytest.mark.parametrize("kind", ["refused", "hung"])
def test_dead_redis_gives_no_observation_and_no_exception(kind: str) -> None:
    if kind == "refused":
        port, cleanup = servers.free_port(), None
    else:
        sock, done = _silent_listener()
        port, cleanup = sock.getsockname()[1], (sock, done)
    tel = Tel()
    reader = RedisInfoReader(30.0, timeout=0.2)
    reader.register(tel.meter)
    dead = redis.Redis(port=port)
    assert reader.add(dead) is not None
    probe_kwargs = next(iter(reader._servers.values())).probe.connection_pool.connection_kwargs
    assert probe_kwargs["socket_timeout"] == 0.2 and probe_kwargs["socket_connect_timeout"] == 0.2
    try:
        t0 = time.monotonic()
        got = tel.points()
        took = time.monotonic() - t0
    finally:
        if cleanup is not None:
            cleanup[1].set()
            cleanup[0].close()
    assert not any(got.get(name) for name in (USED, LIMIT, EVICTED, LOOKUPS)), got
    assert reader.reads == 1
    assert took < 10, f"a dead Redis held the collection for {took:.1f} s"  # 0.2 s expected


def test_disabled_or_unaddressable_clients_are_not_read(monkeypatch: pytest.MonkeyPatch,
                                                        client: redis.Redis) -> None:
    monkeypatch.setenv("SIZEWISE_REDIS_INFO", "false")
    assert watch_redis_server(client, Tel()) is None
    monkeypatch.delenv("SIZEWISE_REDIS_INFO")
    assert watch_redis_server(client, Tel(metrics_enabled=False)) is None
    assert server_attributes(object()) is None  # a cluster client has no single pool
    sentinel_like = SimpleNamespace(connection_pool=SimpleNamespace(connection_kwargs={"db": 0}))
    assert server_attributes(sentinel_like) is None
    unix = SimpleNamespace(connection_pool=SimpleNamespace(connection_kwargs={"path": "/run/redis.sock"}))
    assert server_attributes(unix) == {"server.address": "/run/redis.sock"}
