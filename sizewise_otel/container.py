"""Container view of resources (cgroup v1/v2). Minimal placeholder; see issue 10."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ContainerSample:
    cpu_percent: float | None
    memory_percent: float | None


def container_id() -> str | None:
    return None


class ContainerMonitor:
    """Reads CPU against the quota and memory against the limit; None outside a container."""

    def sample(self) -> ContainerSample | None:
        return None
