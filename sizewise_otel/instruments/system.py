"""System resource signals: CPU, memory, disk, network and this process's RSS.

Container-aware: inside a container with a CPU quota or memory limit, the percentages are of the
container's allowance (see ``container.py``); elsewhere of the host, labelled ``source="host"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil

from sizewise_otel.instruments.container import ContainerMonitor, container_id
from sizewise_otel.instruments.registry import MARKS, PROCESS
from sizewise_otel.telemetry import Telemetry

__all__ = ["SystemMetrics", "container_id"]

Obs = Iterable[tuple[float, dict[str, str]]]


class SystemMetrics:
    def __init__(self, data_path: str = ".") -> None:
        self._process = psutil.Process(os.getpid())
        self._container = ContainerMonitor()
        self._data_path = os.path.abspath(data_path)
        psutil.cpu_percent(None)  # prime: the first non-blocking reading is meaningless

    def cpu(self) -> Obs:
        sample = self._container.sample()
        if sample and sample.cpu_percent is not None:
            return [(sample.cpu_percent, {"source": "container"})]
        return [(psutil.cpu_percent(None), {"source": "host"})]

    def memory(self) -> Obs:
        sample = self._container.sample()
        if sample and sample.memory_percent is not None:
            return [(sample.memory_percent, {"source": "container"})]
        return [(psutil.virtual_memory().percent, {"source": "host"})]

    def disk(self) -> Obs:
        return [(psutil.disk_usage(self._data_path).percent, {"mountpoint": "data"})]

    def network(self) -> Obs:
        io = psutil.net_io_counters()
        return [(float(io.bytes_sent), {"direction": "transmit"}),
                (float(io.bytes_recv), {"direction": "receive"})]

    def rss(self) -> Obs:
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
