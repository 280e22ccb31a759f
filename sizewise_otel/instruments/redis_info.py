"""The Redis server behind the instrumented client(s): memory, maxmemory, evictions, keyspace hits.

``instrument(app, redis=client)`` hands the client to :func:`watch_redis_server`; four observable
instruments (``sizewise.cache.redis.*`` in the catalog) then report what ``INFO`` says about that
client's server. Bounded on every axis:

- only the configured client(s): one series set per distinct server (``server.address``,
  ``server.port``), however many clients point at it;
- one ``INFO`` per server per collection tier (the catalog's tier for these signals), shared by the
  four instruments and by every metric reader;
- its own connection (never the application's pool, whose timeouts may be long), opened for the
  read and closed after it, with a short connect and read timeout and no retries: a dead or
  hung Redis costs at most :data:`PROBE_TIMEOUT_SECONDS` twice per tier and yields no
  observation, never an exception in a scrape.

Read from the sync or asyncio client's connection settings (host/port or unix socket, db,
credentials, TLS). Cluster and Sentinel clients name no single server: they are not read.
``SIZEWISE_REDIS_INFO=false`` turns the reading off.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import CallbackOptions, Observation

from sizewise_otel.catalog import CACHE_RESULT, Kind, signal
from sizewise_otel.instruments.registry import PerProvider

__all__ = ["PROBE_TIMEOUT_SECONDS", "RedisInfoReader", "ServerInfo", "redis_info_enabled",
           "watch_redis_server"]

PROBE_TIMEOUT_SECONDS = 0.5
ENABLED_ENV = "SIZEWISE_REDIS_INFO"
USED, LIMIT, EVICTED, LOOKUPS = ("sizewise.cache.redis.memory.used", "sizewise.cache.redis.memory.limit",
                                 "sizewise.cache.redis.keys.evicted", "sizewise.cache.redis.keyspace.lookups")
_KEPT_KWARGS = ("host", "port", "path", "db", "username", "password", "credential_provider")

ServerKey = tuple[tuple[str, Any], ...]  # the server.* attributes, as sorted pairs


def redis_info_enabled() -> bool:
    """``SIZEWISE_REDIS_INFO`` (default on): false/0/no/off stops the INFO reads."""
    return os.environ.get(ENABLED_ENV, "true").strip().lower() not in ("false", "0", "no", "off")


@dataclass(frozen=True)
class ServerInfo:
    """The INFO fields the signals report (bytes and cumulative counts)."""

    used_memory: int
    maxmemory: int
    evicted_keys: int
    keyspace_hits: int
    keyspace_misses: int

    @classmethod
    def parse(cls, info: dict[str, Any]) -> ServerInfo:
        return cls(int(info["used_memory"]), int(info.get("maxmemory") or 0), int(info["evicted_keys"]),
                   int(info["keyspace_hits"]), int(info["keyspace_misses"]))


def server_attributes(client: Any) -> dict[str, Any] | None:
    """``server.address`` / ``server.port`` of a client that names one server, else ``None``."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return None  # a cluster client: no single pool
    if kwargs.get("path"):
        return {"server.address": str(kwargs["path"])}
    if not kwargs.get("host"):
        return None  # a Sentinel pool asks the sentinels where the master is
    return {"server.address": str(kwargs["host"]), "server.port": int(kwargs.get("port") or 6379)}


def probe_client(client: Any, timeout: float = PROBE_TIMEOUT_SECONDS) -> Any:
    """A sync client for the same server with short timeouts and no retries (sync or asyncio source)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    pool = client.connection_pool
    kwargs: dict[str, Any] = pool.connection_kwargs
    kind = getattr(getattr(pool, "connection_class", None), "__name__", "Connection")
    cls = {"SSLConnection": redis.SSLConnection,
           "UnixDomainSocketConnection": redis.UnixDomainSocketConnection}.get(kind, redis.Connection)
    accepted = _accepted_kwargs(cls)
    kept = {k: v for k, v in kwargs.items()
            if (k in _KEPT_KWARGS or k.startswith("ssl_")) and k in accepted and v is not None}
    if cls is redis.UnixDomainSocketConnection:
        kept.pop("host", None)
        kept.pop("port", None)
    else:
        kept.pop("path", None)
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=cls, max_connections=1, socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0), **kept))


def _accepted_kwargs(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= set(inspect.signature(init).parameters)
    return names


@dataclass
class _Server:
    attrs: dict[str, Any]
    probe: Any
    clients: set[int] = field(default_factory=set)


class RedisInfoReader:
    """The watched servers and their last INFO, read at most once per ``interval`` seconds."""

    def __init__(self, interval: float, *, timeout: float = PROBE_TIMEOUT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.timeout = timeout
        self._clock = clock
        self._servers: dict[ServerKey, _Server] = {}
        self._lock = threading.Lock()  # the server set
        self._read_lock = threading.Lock()  # one refresh at a time; readers wait for it
        self._read_at: float | None = None
        self._last: dict[ServerKey, tuple[dict[str, Any], ServerInfo]] = {}
        self.reads = 0  # INFO commands sent (tests and docs read it)

    def add(self, client: Any) -> Callable[[], None] | None:
        """Watch ``client``'s server; returns what stops watching it (``None``: nothing to read)."""
        attrs = server_attributes(client)
        if attrs is None:
            return None
        key: ServerKey = tuple(sorted(attrs.items()))
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                server = self._servers[key] = _Server(attrs, probe_client(client, self.timeout))
                self._read_at = None  # a new server is read at the next collection
            server.clients.add(id(client))
        token = id(client)

        def remove() -> None:
            with self._lock:
                found = self._servers.get(key)
                if found is None:
                    return
                found.clients.discard(token)
                if not found.clients:
                    del self._servers[key]
                    self._last.pop(key, None)

        with contextlib.suppress(TypeError):  # a client dropped without uninstrument() stops being read too
            weakref.finalize(client, remove)
        return remove

    @property
    def servers(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s.attrs) for s in self._servers.values()]

    def snapshot(self) -> list[tuple[dict[str, Any], ServerInfo]]:
        """(attributes, INFO) of every watched server that answered its latest read."""
        with self._read_lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.interval:
                self._refresh()
                self._read_at = now
            with self._lock:
                return [self._last[k] for k in self._servers if k in self._last]

    def _refresh(self) -> None:
        with self._lock:
            servers = list(self._servers.items())
        fresh: dict[ServerKey, tuple[dict[str, Any], ServerInfo]] = {}
        for key, server in servers:
            info = self._read(server.probe)
            if info is not None:
                fresh[key] = (server.attrs, info)
        with self._lock:
            self._last = fresh  # a server that did not answer has no observation this tier

    def _read(self, probe: Any) -> ServerInfo | None:
        self.reads += 1
        try:
            # No span for our own INFO where a global redis instrumentor (zero-code mode) would trace it.
            with suppress_instrumentation():
                return ServerInfo.parse(probe.info())
        except Exception:  # down, hung (timed out), refused auth, or not a Redis: no observation
            return None
        finally:
            with contextlib.suppress(Exception):
                probe.connection_pool.disconnect()  # no idle connection held to a shared server

    # --- the instruments ---------------------------------------------------------------------

    def observations(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        out: list[tuple[float, dict[str, Any]]] = []
        for attrs, info in self.snapshot():
            if name == USED:
                out.append((float(info.used_memory), attrs))
            elif name == LIMIT:
                if info.maxmemory > 0:  # 0 is "no limit": no line, and no ratio against it
                    out.append((float(info.maxmemory), attrs))
            elif name == EVICTED:
                out.append((float(info.evicted_keys), attrs))
            elif name == LOOKUPS:
                out.append((float(info.keyspace_hits), {**attrs, CACHE_RESULT: "hit"}))
                out.append((float(info.keyspace_misses), {**attrs, CACHE_RESULT: "miss"}))
        return out

    def register(self, meter: Any) -> None:
        """The four observables on ``meter``, all reading this reader's shared snapshot."""
        for name in (USED, LIMIT, EVICTED, LOOKUPS):
            sig = signal(name)
            factory = meter.create_observable_counter if sig.kind is Kind.OBSERVABLE_COUNTER \
                else meter.create_observable_gauge
            factory(name, callbacks=[self._callback(name)], unit=sig.unit, description=sig.description)

    def _callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            try:
                return [Observation(v, a) for v, a in self.observations(name)]
            except Exception:  # never break a scrape
                return []

        return callback


_readers: PerProvider[RedisInfoReader] = PerProvider()


def reader_for(telemetry: Any) -> RedisInfoReader:
    """The process's reader for this meter provider (its instruments registered once)."""
    def make() -> RedisInfoReader:
        reader = RedisInfoReader(float(signal(USED).tier or 0))
        reader.register(telemetry.meter)
        return reader

    return _readers.get(telemetry.meter_provider, make)


def watch_redis_server(client: Any, telemetry: Any) -> Callable[[], None] | None:
    """Report ``client``'s server INFO through ``telemetry``; returns the undo (``None``: not watched:
    disabled, metrics collection off, or a client that names no single server)."""
    settings = getattr(telemetry, "settings", None)
    if not redis_info_enabled() or not getattr(settings, "metrics_collection_enabled", True):
        return None
    if server_attributes(client) is None:
        return None
    return reader_for(telemetry).add(client)
