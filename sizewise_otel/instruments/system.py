"""System resource signals: the usage gauges the alerts read, and host/process signals under their
registered semconv names (``system.cpu.utilization``, ``system.memory.usage``, ``system.network.io``,
``process.memory.usage``, ...), read from psutil. The contrib system-metrics instrumentor emits
outdated keys (``cpu``, ``state``, ``direction``, ``device``), ``process.open_file_descriptor.count``
and a gauge-kind ``system.memory.usage``, and a View cannot rename keys, units or kinds: so these
small observables replace it, each in a tier and bounded (CPU modes, memory states, at most
``MAX_DISKS`` block devices; no per-CPU or per-interface series).

Disk usage is reported for every distinct mount holding one of the service's data paths
(``SIZEWISE_DATA_PATHS``), labelled with the real mountpoint: a separate volume for the database
and one for logs show as two series, and two paths on one filesystem as one.

Container-aware: inside a container with a CPU quota or memory limit, the percentages are of the
container's allowance (see ``container.py``); elsewhere of the host, labelled ``sizewise.usage.source="host"``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from sizewise_otel import catalog
from sizewise_otel.catalog import MOUNTPOINT, USAGE_SOURCE
from sizewise_otel.instruments.container import CONTAINER_SIGNALS, ContainerMonitor, container_id
from sizewise_otel.telemetry import Telemetry

__all__ = ["SystemMetrics", "container_id", "register_container_metrics"]

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
        psutil.cpu_times_percent(None)
        self._cpu_lock = threading.Lock()
        self._cpu_prev: tuple[float, float, float] | None = None
        self.process_cpu()  # prime: a utilization needs two readings

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
        """system.network.io: all interfaces together (per-interface series would grow with veths)."""
        io = psutil.net_io_counters()
        return [(float(io.bytes_sent), {"network.io.direction": "transmit"}),
                (float(io.bytes_recv), {"network.io.direction": "receive"})]

    def host_cpu(self) -> Obs:
        """system.cpu.utilization per mode, over all CPUs since the previous reading."""
        times = psutil.cpu_times_percent(None)
        return [(getattr(times, mode) / 100.0, {"cpu.mode": mode}) for mode in CPU_MODES]

    def host_memory(self) -> Obs:
        vm = psutil.virtual_memory()
        return [(float(getattr(vm, state, 0)), {"system.memory.state": state}) for state in MEMORY_STATES]

    def host_memory_utilization(self) -> Obs:
        vm = psutil.virtual_memory()
        return [(getattr(vm, state, 0) / vm.total, {"system.memory.state": state}) for state in MEMORY_STATES]

    def disk_io(self) -> Obs:
        """system.disk.io per block device (loop/ram devices left out, at most MAX_DISKS)."""
        try:
            disks = psutil.disk_io_counters(perdisk=True) or {}
        except (OSError, RuntimeError):
            return []
        out: list[tuple[float, dict[str, str]]] = []
        for device in sorted(d for d in disks if not _PSEUDO_DISK.match(d))[:MAX_DISKS]:
            io = disks[device]
            out += [(float(io.read_bytes), {"system.device": device, "disk.io.direction": "read"}),
                    (float(io.write_bytes), {"system.device": device, "disk.io.direction": "write"})]
        return out

    def _own(self) -> psutil.Process:
        if self._process.pid != os.getpid():  # a forked worker (gunicorn --preload) reads itself
            self._process = psutil.Process(os.getpid())
            self._cpu_prev = None
        return self._process

    def rss(self) -> Obs:
        """process.memory.usage: this process's resident set."""
        return [(float(self._own().memory_info().rss), {})]

    def process_cpu(self) -> Obs:
        """process.cpu.utilization per mode: CPU time since the last reading over elapsed time x CPUs."""
        proc = self._own()
        times, now = proc.cpu_times(), time.monotonic()
        with self._cpu_lock:
            prev, self._cpu_prev = self._cpu_prev, (times.user, times.system, now)
        if prev is None or now <= prev[2]:
            return []
        span = (now - prev[2]) * (psutil.cpu_count() or 1)
        return [(max(times.user - prev[0], 0.0) / span, {"cpu.mode": "user"}),
                (max(times.system - prev[1], 0.0) / span, {"cpu.mode": "system"})]

    def threads(self) -> Obs:
        return [(float(self._own().num_threads()), {})]

    def file_descriptors(self) -> Obs:
        try:
            return [(float(self._own().num_fds()), {})]
        except (AttributeError, psutil.Error):  # not on Windows
            return []

    def register(self, telemetry: Telemetry) -> None:
        telemetry.observe("sizewise.cpu.usage", self.cpu)
        telemetry.observe("sizewise.memory.usage", self.memory)
        telemetry.observe("sizewise.disk.usage", self.disk)
        register_container_metrics(telemetry, self._container)

    def register_host(self, telemetry: Telemetry) -> None:
        """The host and process signals under their registered names (idempotent per Telemetry)."""
        for name, callback in (
                ("system.cpu.utilization", self.host_cpu), ("system.memory.usage", self.host_memory),
                ("system.memory.utilization", self.host_memory_utilization),
                ("system.network.io", self.network), ("system.disk.io", self.disk_io),
                ("process.cpu.utilization", self.process_cpu), ("process.memory.usage", self.rss),
                ("process.thread.count", self.threads),
                ("process.unix.file_descriptor.count", self.file_descriptors)):
            telemetry.observe(name, callback)

    def cpu_percent(self) -> float:
        return next(iter(self.cpu()))[0]


CPU_MODES = ("user", "system", "idle")
MEMORY_STATES = ("used", "free", "cached")
MAX_DISKS = 16
_PSEUDO_DISK = re.compile(r"^(loop|ram|zram|sr|fd)\d")

# What the contrib system-metrics instrumentor may record: nothing (an empty config, not None,
# which would mean its full default set). Zero-code mode (autoinstrument.py) still loads it through
# its entry point; the registered names come from SystemMetrics.register_host instead.
SYSTEM_METRICS_CONFIG: dict[str, list[str] | None] = {}


def instrument_system(telemetry: Telemetry, system: SystemMetrics | None = None) -> None:
    """Register the host and process signals; a second call for the same Telemetry adds nothing."""
    (system or SystemMetrics()).register_host(telemetry)


def register_container_metrics(telemetry: Telemetry, monitor: ContainerMonitor | None = None) -> list[str]:
    """Observe the container signals the catalog defines; returns the names registered.

    Nothing is registered outside a cgroup; a signal missing from the catalog is skipped, and a
    value the cgroup does not provide (no limit, no OOM counter) is simply not reported.
    """
    monitor = monitor or ContainerMonitor()
    if not monitor.in_cgroup:
        return []
    registered = []
    for name, attr in CONTAINER_SIGNALS.items():
        try:
            catalog.signal(name)
        except KeyError:
            continue
        telemetry.observe(name, _field_callback(monitor, attr))
        registered.append(name)
    return registered


def _field_callback(monitor: ContainerMonitor, attr: str) -> Callable[[], list[tuple[float, dict[str, Any]]]]:
    def callback() -> list[tuple[float, dict[str, Any]]]:
        sample = monitor.sample()
        value = getattr(sample, attr, None) if sample else None
        return [] if value is None else [(float(value), {})]

    return callback
