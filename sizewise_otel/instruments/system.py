"""System resource signals: CPU, memory, disk, network and this process's RSS.

Disk usage is reported for every distinct mount holding one of the service's data paths
(``SIZEWISE_DATA_PATHS``), labelled with the real mountpoint: a separate volume for the database
and one for logs show as two series, and two paths on one filesystem as one.

Container-aware: inside a container with a CPU quota or memory limit, the percentages are of the
container's allowance (see ``container.py``); elsewhere of the host, labelled ``sizewise.usage.source="host"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil

from sizewise_otel.catalog import MOUNTPOINT, USAGE_SOURCE
from sizewise_otel.instruments.container import ContainerMonitor, container_id
from sizewise_otel.instruments.registry import MARKS, PROCESS
from sizewise_otel.telemetry import Telemetry

__all__ = ["SystemMetrics", "container_id"]

Obs = Iterable[tuple[float, dict[str, str]]]


DATA_PATHS_ENV = "SIZEWISE_DATA_PATHS"


def data_paths_from_env() -> list[str]:
    """``SIZEWISE_DATA_PATHS``: the service's data paths, separated by ``:`` or ``,``; default the
    working directory (where the SQLite files and logs land unless configured elsewhere)."""
    raw = os.environ.get(DATA_PATHS_ENV, "")
    paths = [p.strip() for p in raw.replace(",", os.pathsep).split(os.pathsep) if p.strip()]
    return paths or ["."]


def mountpoint_of(path: str, mountpoints: Iterable[str] = ()) -> tuple[str, str]:
    """(mountpoint, existing path) for ``path``: the nearest existing ancestor (where its files
    would land) and the mount that holds it, from the mount table (bind mounts included) or, for
    a mount missing there, the device change ``os.path.ismount`` sees."""
    known = set(mountpoints)
    current = os.path.realpath(path)
    while not os.path.exists(current) and os.path.dirname(current) != current:
        current = os.path.dirname(current)
    existing = probe = current
    while True:
        if probe in known or os.path.ismount(probe):
            return probe, existing
        parent = os.path.dirname(probe)
        if parent == probe:
            return probe, existing
        probe = parent


def _mount_table() -> list[str]:
    try:
        return [p.mountpoint for p in psutil.disk_partitions(all=True)]
    except (OSError, RuntimeError):
        return []


class SystemMetrics:
    def __init__(self, data_path: str | None = None, *, data_paths: Iterable[str] | None = None) -> None:
        self._process = psutil.Process(os.getpid())
        self._container = ContainerMonitor()
        if data_paths is None:
            data_paths = [data_path] if data_path is not None else data_paths_from_env()
        self.data_paths = [os.path.abspath(p) for p in data_paths]
        psutil.cpu_percent(None)  # prime: the first non-blocking reading is meaningless

    def cpu(self) -> Obs:
        sample = self._container.sample()
        if sample and sample.cpu_percent is not None:
            return [(sample.cpu_percent, {USAGE_SOURCE: "container"})]
        return [(psutil.cpu_percent(None), {USAGE_SOURCE: "host"})]

    def memory(self) -> Obs:
        sample = self._container.sample()
        if sample and sample.memory_percent is not None:
            return [(sample.memory_percent, {USAGE_SOURCE: "container"})]
        return [(psutil.virtual_memory().percent, {USAGE_SOURCE: "host"})]

    def mounts(self) -> dict[str, str]:
        """Distinct mountpoint -> one data path on it, re-resolved per read (volumes come and go)."""
        table = _mount_table()
        found: dict[str, str] = {}
        for path in self.data_paths:
            mountpoint, existing = mountpoint_of(path, table)
            found.setdefault(mountpoint, existing)
        return found

    def disk(self) -> Obs:
        """One reading per distinct mount of the data paths, labelled with its real mountpoint;
        a path that cannot be read is left out (the others still report)."""
        out = []
        for mountpoint, path in sorted(self.mounts().items()):
            try:
                out.append((psutil.disk_usage(path).percent, {MOUNTPOINT: mountpoint}))
            except OSError:
                continue
        return out

    def network(self) -> Obs:
        io = psutil.net_io_counters()
        return [(float(io.bytes_sent), {"direction": "transmit"}),
                (float(io.bytes_recv), {"direction": "receive"})]

    def rss(self) -> Obs:
        if self._process.pid != os.getpid():  # a forked worker (gunicorn --preload) reads itself
            self._process = psutil.Process(os.getpid())
        return [(float(self._process.memory_info().rss), {})]

    def register(self, telemetry: Telemetry) -> None:
        telemetry.observe("sizewise.cpu.usage", self.cpu)
        telemetry.observe("sizewise.memory.usage", self.memory)
        telemetry.observe("sizewise.disk.usage", self.disk)
        telemetry.observe("sizewise.network.io", self.network)
        telemetry.observe("sizewise.process.memory.rss", self.rss)
        from sizewise_otel.instruments.container import register_container_metrics

        register_container_metrics(telemetry, self._container)

    def cpu_percent(self) -> float:
        return next(iter(self.cpu()))[0]


# A bounded selection of the system-metrics instrumentation: series grow with the machine's CPUs,
# disks and interfaces, never with traffic.
SYSTEM_METRICS_CONFIG: dict[str, list[str] | None] = {
    "system.cpu.utilization": ["idle", "user", "system"],
    "system.memory.usage": ["used", "free", "cached"],
    "system.memory.utilization": ["used", "free", "cached"],
    "system.network.io": ["transmit", "receive"],
    "system.disk.io": ["read", "write"],
    "process.cpu.utilization": ["user", "system"],
    "process.memory.usage": None,
    "process.open_file_descriptor.count": None,
    "process.thread.count": None,
}


def instrument_system(telemetry: Telemetry) -> None:
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    if MARKS.claim(PROCESS, "system"):
        SystemMetricsInstrumentor(config=SYSTEM_METRICS_CONFIG).instrument(meter_provider=telemetry.meter_provider)
