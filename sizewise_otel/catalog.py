"""The signal catalog: every metric SizeWise records or relies on, defined exactly once.

Instruments, histogram views, Grafana panels, Prometheus rules and the README's metrics
reference are all derived from these entries. Add a signal here, then run ``sizewise-otel render``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class Kind(enum.StrEnum):
    COUNTER = "counter"
    UP_DOWN_COUNTER = "updowncounter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"  # synchronous gauge
    OBSERVABLE_GAUGE = "observable_gauge"
    OBSERVABLE_COUNTER = "observable_counter"
    # A polled level that semconv registers as an UpDownCounter (memory usage, limits, counts).
    OBSERVABLE_UP_DOWN_COUNTER = "observable_updowncounter"


OBSERVABLE_KINDS = (Kind.OBSERVABLE_GAUGE, Kind.OBSERVABLE_COUNTER, Kind.OBSERVABLE_UP_DOWN_COUNTER)


class Tier(enum.IntEnum):
    """The spec's collection tiers: an observable callback is evaluated at most once per tier.

    Only observable signals (polled by a callback) have a tier; every one has exactly one
    (tests/unit/test_tiers.py). Synchronous instruments (requests, HVAC calculations, database and
    cache operations, errors) are recorded as events happen, so every scrape or export already sees
    them exactly: there is nothing to poll, and the spec's "slow" HVAC/database tier leaves them
    as they are. How the observables are split (the spec: fast = system resources and critical
    application signals, medium = application performance and microservices health):

    - FAST, 5 s: CPU, memory, network, the process's CPU, memory and thread/descriptor counts, the
      5xx share, the cgroup's CPU/throttling counters and working set (saturation that matters
      within seconds), and health status (DatabaseDown and RedisDown fire after 1 minute: a stale
      status would eat that minute). All are reads of local counters or cached check results.
    - MEDIUM, 30 s: the database pool, disk I/O per device and OOM kills (application performance:
      trends over minutes, their alerts hold for 5 minutes or look 10 minutes back), health-check
      durations, and Redis INFO. Redis is a network round trip to a shared server, so it is not
      read every 5 s; but its counters (evictions, keyspace hits/misses) feed ``rate()`` panels
      over Grafana's ``$__rate_interval`` (4 scrapes, about 1 minute) and the eviction alert: read
      every 5 minutes, such a rate would be 0 for four minutes and a spike in the fifth.
    - SLOW, 5 min: disk usage per mount (disks fill over hours: the capacity fit spans 6 h) and
      the container's CPU and memory limits (configuration: they change on a resize, not under load).
    """

    FAST = 5
    MEDIUM = 30
    SLOW = 300


class Owner(enum.StrEnum):
    SIZEWISE = "sizewise"  # recorded by this package
    OTEL_HTTP = "opentelemetry-instrumentation-asgi/httpx"
    OTEL_SQLALCHEMY = "opentelemetry-instrumentation-sqlalchemy"
    # Recorded by this package under a registered semconv name (system, process, container), read
    # from psutil and the cgroup: the contrib system-metrics instrumentor emits outdated names.
    SEMCONV = "sizewise (registered name)"


# The semconv-advised boundaries (HTTP and database metric pages, semantic conventions 1.44), so
# a dashboard written for any OTel service reads ours; finer ones only through the opt-in of
# sizewise_otel/instruments/buckets.py (SIZEWISE_FINE_LATENCY_BUCKETS).
HTTP_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
DB_DURATION_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
# Seconds buckets for sizewise.* operations (sub-millisecond cache hits up to 2.5 s).
FAST_OP_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)

_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent"}


@dataclass(frozen=True)
class Signal:
    name: str
    kind: Kind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    tier: Tier | None = None
    owner: Owner = Owner.SIZEWISE
    # Documented bound on the attribute values, so series counts are stated, not hoped for.
    cardinality: str = "1"
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def prom_name(self) -> str:
        """The name the OTel Prometheus exporter (and the collector's) gives this signal."""
        base = self.name.replace(".", "_")
        suffix = _UNIT_SUFFIX.get(self.unit)
        if suffix and not base.endswith(suffix):
            base = f"{base}_{suffix}"
        if self.kind in (Kind.COUNTER, Kind.OBSERVABLE_COUNTER):
            base += "_total"
        return base

    @property
    def prom_labels(self) -> tuple[str, ...]:
        return tuple(a.replace(".", "_") for a in self.attributes)

    @property
    def sample_name(self) -> str:
        """A series name that exists once the signal has data (histograms expose _bucket)."""
        return f"{self.prom_name}_bucket" if self.kind is Kind.HISTOGRAM else self.prom_name


HTTP_SERVER_ATTRS = (
    "http.request.method", "http.route", "http.response.status_code", "url.scheme", "error.type",
    "network.protocol.version",
)

REDIS_SERVER_ATTRS = ("server.address", "server.port")
# Project-defined attribute keys live under sizewise. (semconv registers none for these).
CALC_TYPE = "sizewise.hvac.calculation.type"
CALC_OUTCOME = "sizewise.hvac.calculation.outcome"
USAGE_SOURCE = "sizewise.usage.source"  # container (of its limit) or host
MOUNTPOINT = "system.filesystem.mountpoint"  # registered
HEALTH_CHECK = "sizewise.health.check"
HEALTH_STATE = "sizewise.health.state"  # healthy, warning, critical
CACHE_RESULT = "sizewise.cache.result"  # hit, miss (and set, error on cache operations)
ERROR_SEVERITY = "sizewise.error.severity"  # low, medium, high, critical
DROP_REASON = "sizewise.error.drop.reason"
NOTIFICATION_CHANNEL = "sizewise.notification.channel"
NOTIFICATION_OUTCOME = "sizewise.notification.outcome"
TELEMETRY_SIGNAL = "sizewise.telemetry.signal"  # traces or metrics
REDIS_SERVERS = "Redis servers of the instrumented clients"

SIGNALS: tuple[Signal, ...] = (
    # --- HTTP, the service mesh (recorded by the OTel instrumentations) ----------------------
    Signal("http.server.request.duration", Kind.HISTOGRAM, "s",
           "Duration of inbound HTTP requests, by route template and status.",
           HTTP_SERVER_ATTRS, HTTP_DURATION_BUCKETS, owner=Owner.OTEL_HTTP,
           cardinality="routes x methods x status codes (templates only; unmatched paths share one)"),
    Signal("http.server.active_requests", Kind.UP_DOWN_COUNTER, "{request}",
           "Inbound HTTP requests in flight.", ("http.request.method", "url.scheme"),
           owner=Owner.OTEL_HTTP, cardinality="methods"),
    Signal("http.client.request.duration", Kind.HISTOGRAM, "s",
           "Duration of outbound HTTP calls to other services (httpx).",
           ("http.request.method", "server.address", "server.port", "http.response.status_code",
            "error.type"), HTTP_DURATION_BUCKETS, owner=Owner.OTEL_HTTP,
           cardinality="configured peer services x methods x status codes"),
    # --- database --------------------------------------------------------------------------
    Signal("db.client.operation.duration", Kind.HISTOGRAM, "s",
           "Duration of database operations: SQLAlchemy statements and Redis commands.",
           ("db.system.name", "db.namespace", "server.address", "server.port", "error.type"),
           DB_DURATION_BUCKETS, cardinality="databases (engines and Redis clients) x error types"),
    Signal("db.client.connection.count", Kind.OBSERVABLE_UP_DOWN_COUNTER, "{connection}",
           "Database pool connections by state: used (checked out) or idle.",
           ("db.client.connection.state", "db.client.connection.pool.name"), tier=Tier.MEDIUM,
           cardinality="instrumented engines x 2 states"),
    Signal("db.client.connection.max", Kind.OBSERVABLE_UP_DOWN_COUNTER, "{connection}",
           "The most connections a database pool allows (size + overflow).",
           ("db.client.connection.pool.name",), tier=Tier.MEDIUM, cardinality="instrumented engines"),
    # --- cache -----------------------------------------------------------------------------
    Signal("sizewise.cache.operations", Kind.COUNTER, "{operation}",
           "Cache operations by operation and result (hit, miss, set, error).",
           ("sizewise.cache.backend", "sizewise.cache.operation", "sizewise.cache.result"),
           cardinality="2 backends x 3 operations x 4 results"),
    Signal("sizewise.cache.operation.duration", Kind.HISTOGRAM, "s",
           "Latency of cache operations.", ("sizewise.cache.backend", "sizewise.cache.operation"),
           FAST_OP_BUCKETS,
           cardinality="2 backends x 3 operations"),
    # --- the Redis server behind the instrumented client(s), from INFO (no OTel semconv exists
    # for these: the collector's redis receiver has its own names, so ours are sizewise.cache.redis.*).
    # Every instance reports the same server: panels and alerts take the max per server, never a sum.
    Signal("sizewise.cache.redis.memory.used", Kind.OBSERVABLE_GAUGE, "By",
           "Memory the Redis server uses (INFO used_memory).", REDIS_SERVER_ATTRS, tier=Tier.MEDIUM,
           cardinality=REDIS_SERVERS),
    Signal("sizewise.cache.redis.memory.limit", Kind.OBSERVABLE_GAUGE, "By",
           "The Redis server's maxmemory (INFO maxmemory); not reported when it has none (0).",
           REDIS_SERVER_ATTRS, tier=Tier.MEDIUM, cardinality=REDIS_SERVERS),
    Signal("sizewise.cache.redis.keys.evicted", Kind.OBSERVABLE_COUNTER, "{key}",
           "Keys the Redis server evicted to stay under maxmemory (INFO evicted_keys).",
           REDIS_SERVER_ATTRS, tier=Tier.MEDIUM, cardinality=REDIS_SERVERS),
    Signal("sizewise.cache.redis.keyspace.lookups", Kind.OBSERVABLE_COUNTER, "{lookup}",
           "Key lookups on the Redis server by result, hit or miss (INFO keyspace_hits/_misses), "
           "from every client of that server.", (*REDIS_SERVER_ATTRS, CACHE_RESULT), tier=Tier.MEDIUM,
           cardinality=f"{REDIS_SERVERS} x 2 results"),
    # --- HVAC business signals -------------------------------------------------------------
    Signal("sizewise.hvac.calculations", Kind.COUNTER, "{calculation}",
           "HVAC calculations by type and outcome (success, invalid, error).",
           (CALC_TYPE, CALC_OUTCOME), cardinality="calculation types x 3 outcomes"),
    Signal("sizewise.hvac.calculation.duration", Kind.HISTOGRAM, "s",
           "Time spent computing an HVAC calculation.", (CALC_TYPE,), FAST_OP_BUCKETS,
           cardinality="calculation types"),
    Signal("sizewise.sessions.active", Kind.UP_DOWN_COUNTER, "{session}",
           "User sessions currently active.", cardinality="1"),
    # --- errors ----------------------------------------------------------------------------
    Signal("sizewise.errors", Kind.COUNTER, "{error}",
           "Errors captured by the error tracker, by exception type and severity.",
           ("error.type", ERROR_SEVERITY), cardinality="exception types (capped at 200) x 4 severities"),
    Signal("sizewise.errors.dropped", Kind.COUNTER, "{error}",
           "Error events not stored (queue full or store unavailable).", (DROP_REASON,),
           cardinality="3 reasons"),
    Signal("sizewise.error.groups.new", Kind.COUNTER, "{group}",
           "Error groups seen for the first time (or regressed).", (ERROR_SEVERITY,),
           cardinality="4 severities"),
    Signal("sizewise.error.rate", Kind.OBSERVABLE_GAUGE, "%",
           "Share of HTTP requests answered with 5xx over the last minute.", tier=Tier.FAST),
    # --- system resources ------------------------------------------------------------------
    Signal("sizewise.cpu.usage", Kind.OBSERVABLE_GAUGE, "%",
           "CPU usage: of the container's quota when there is one, of the host otherwise.",
           (USAGE_SOURCE,), tier=Tier.FAST, cardinality="2 sources (container, host)"),
    Signal("sizewise.memory.usage", Kind.OBSERVABLE_GAUGE, "%",
           "Memory usage: of the container's limit when there is one, of the host otherwise.",
           (USAGE_SOURCE,), tier=Tier.FAST, cardinality="2 sources"),
    Signal("sizewise.disk.usage", Kind.OBSERVABLE_GAUGE, "%",
           "Usage of each filesystem holding the service's data paths (SIZEWISE_DATA_PATHS), by "
           "its real mountpoint.", (MOUNTPOINT,), tier=Tier.SLOW,
           cardinality="distinct mountpoints of the configured data paths"),
    # --- host and process under their registered names (instruments/system.py, from psutil) ---
    Signal("system.cpu.utilization", Kind.OBSERVABLE_GAUGE, "1",
           "Share of host CPU time per mode, over all CPUs.", ("cpu.mode",), tier=Tier.FAST,
           owner=Owner.SEMCONV, cardinality="3 modes (user, system, idle)"),
    Signal("system.memory.usage", Kind.OBSERVABLE_UP_DOWN_COUNTER, "By",
           "Host memory in use per state.", ("system.memory.state",), tier=Tier.FAST,
           owner=Owner.SEMCONV, cardinality="3 states (used, free, cached)"),
    Signal("system.memory.utilization", Kind.OBSERVABLE_GAUGE, "1",
           "Share of host memory per state.", ("system.memory.state",), tier=Tier.FAST,
           owner=Owner.SEMCONV, cardinality="3 states (used, free, cached)"),
    Signal("system.network.io", Kind.OBSERVABLE_COUNTER, "By",
           "Bytes sent and received on all interfaces.", ("network.io.direction",), tier=Tier.FAST,
           owner=Owner.SEMCONV, cardinality="2 directions (transmit, receive)"),
    Signal("system.disk.io", Kind.OBSERVABLE_COUNTER, "By",
           "Bytes read from and written to each block device.", ("system.device", "disk.io.direction"),
           tier=Tier.MEDIUM, owner=Owner.SEMCONV, cardinality="block devices (at most 16) x 2 directions"),
    Signal("process.cpu.utilization", Kind.OBSERVABLE_GAUGE, "1",
           "CPU time of this process per mode since the last reading, of the elapsed time and all CPUs.",
           ("cpu.mode",), tier=Tier.FAST, owner=Owner.SEMCONV, cardinality="2 modes (user, system)"),
    Signal("process.memory.usage", Kind.OBSERVABLE_UP_DOWN_COUNTER, "By",
           "Resident memory of this process.", tier=Tier.FAST, owner=Owner.SEMCONV),
    Signal("process.thread.count", Kind.OBSERVABLE_UP_DOWN_COUNTER, "{thread}",
           "Threads of this process.", tier=Tier.FAST, owner=Owner.SEMCONV),
    Signal("process.unix.file_descriptor.count", Kind.OBSERVABLE_UP_DOWN_COUNTER, "{file_descriptor}",
           "File descriptors this process holds open.", tier=Tier.FAST, owner=Owner.SEMCONV),
    # --- container (cgroup v1/v2; only inside a container with limits) ---------------------
    Signal("k8s.container.cpu.limit.current", Kind.OBSERVABLE_UP_DOWN_COUNTER, "{cpu}",
           "CPU limit in force for the container (CFS quota), in cores; registered under k8s. "
           "but read from the cgroup, so inside any container.", tier=Tier.SLOW, owner=Owner.SEMCONV),
    Signal("sizewise.container.cpu.periods", Kind.OBSERVABLE_COUNTER, "{period}",
           "CFS enforcement periods elapsed for the container.", tier=Tier.FAST),
    Signal("sizewise.container.cpu.throttled.periods", Kind.OBSERVABLE_COUNTER, "{period}",
           "CFS periods in which the container was throttled.", tier=Tier.FAST),
    Signal("sizewise.container.cpu.throttled.time", Kind.OBSERVABLE_COUNTER, "s",
           "Total time the container was throttled by its CPU quota.", tier=Tier.FAST),
    Signal("container.memory.working_set", Kind.OBSERVABLE_UP_DOWN_COUNTER, "By",
           "Container memory working set (usage minus inactive page cache).", tier=Tier.FAST,
           owner=Owner.SEMCONV),
    Signal("k8s.container.memory.limit.current", Kind.OBSERVABLE_UP_DOWN_COUNTER, "By",
           "Memory limit in force for the container, read from the cgroup.", tier=Tier.SLOW,
           owner=Owner.SEMCONV),
    Signal("sizewise.container.memory.oom_kills", Kind.OBSERVABLE_COUNTER, "{kill}",
           "Processes in the container killed by the OOM killer.", tier=Tier.MEDIUM),
    # --- health and delivery ---------------------------------------------------------------
    # Unit "{status}", not "1": the collector's exporter appends "_ratio" to unit-1 gauges and the
    # in-process one does not, so "1" would give the two paths different names.
    Signal("sizewise.health.status", Kind.OBSERVABLE_GAUGE, "{status}",
           "Health per check and state (healthy, warning, critical): 1 for the check's current state, "
           "0 for the others.", (HEALTH_CHECK, HEALTH_STATE), tier=Tier.FAST,
           cardinality="configured checks x 3 states"),
    Signal("sizewise.health.check.duration", Kind.OBSERVABLE_GAUGE, "s",
           "Duration of the last run of each health check.", (HEALTH_CHECK,), tier=Tier.MEDIUM,
           cardinality="configured checks"),
    Signal("sizewise.alerts.notifications", Kind.COUNTER, "{notification}",
           "Alert notifications sent by the embedded evaluator, by channel and outcome.",
           (NOTIFICATION_CHANNEL, NOTIFICATION_OUTCOME), cardinality="3 channels x 3 outcomes"),
    Signal("sizewise.telemetry.export.failures", Kind.COUNTER, "{failure}",
           "Failed OTLP export batches, by signal.", (TELEMETRY_SIGNAL,), cardinality="2 signals"),
)

_BY_NAME: dict[str, Signal] = {s.name: s for s in SIGNALS}


def signal(name: str) -> Signal:
    """Look a signal up by OTel name or Prometheus name."""
    found = _BY_NAME.get(name) or next((s for s in SIGNALS if s.prom_name == name), None)
    if found is None:
        raise KeyError(name)
    return found


def sizewise_signals() -> Iterable[Signal]:
    return (s for s in SIGNALS if s.owner is Owner.SIZEWISE)
