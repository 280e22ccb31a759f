"""The container's view of CPU and memory, read from the process's own cgroup (v1, v2 or hybrid).

Inside a container, host-wide numbers mislead: a pod limited to half a core is saturated while the
node reports 6 % CPU. ``ContainerMonitor.sample()`` reports CPU as a share of the cgroup's quota and
memory as a share of its limit, plus the throttling and OOM-kill counters. When the cgroup has no
quota (``max`` / ``-1``) or no limit (``max`` / a huge number), the matching percentage is ``None``
and callers fall back to host numbers, labelled ``source="host"``.

How the cgroup is found:

1. ``/proc/self/cgroup`` gives the process's cgroup path per hierarchy: ``N:cpu,cpuacct:/path``
   lines for v1, one ``0::/path`` line for v2; both kinds at once is hybrid mode.
2. ``/proc/self/mountinfo`` gives where each hierarchy is mounted and which cgroup is the mount's
   root (a container usually sees its own cgroup mounted at ``/sys/fs/cgroup``). Without it the
   standard mount points are assumed.
3. Per controller (cpu, cpuacct, memory), a v1 hierarchy that carries it wins; otherwise v2.
   Limits are the tightest one found from the process's cgroup up to the mount root, since a
   limit set on a parent cgroup applies as well.

CPU percent is ``delta usage / (delta wall time x quota cores) x 100`` between two readings; the
constructor takes the priming reading, and readings closer together than ``min_interval`` seconds
reuse the previous value (a scrape asks for CPU and memory back to back). Memory usage is the
working set (usage minus inactive page cache), as the kubelet and ``kubectl top`` count it.

Every path is relative to ``root`` (``/`` by default), so tests build cgroup trees in a temp dir.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CONTAINER_SIGNALS",
    "ContainerMonitor",
    "ContainerSample",
    "container_id",
    "parse_container_id",
]

# A v1 limit at or above this is "no limit" (the kernel's unlimited is 2**63 - 1 rounded to pages).
_UNLIMITED_BYTES = 1 << 60
_CONTROLLERS = ("cpu", "cpuacct", "memory")


@dataclass(frozen=True)
class ContainerSample:
    """One reading of the process's cgroup. ``None`` means "not available here"."""

    cpu_percent: float | None  # of the quota; None without a quota or before a second reading
    memory_percent: float | None  # of the limit; None without a limit
    cpu_limit_cores: float | None = None
    cpu_usage_seconds: float | None = None  # cumulative
    cpu_periods: int | None = None  # CFS enforcement periods elapsed (cumulative)
    cpu_throttled_periods: int | None = None  # periods in which the cgroup was throttled
    cpu_throttled_seconds: float | None = None  # cumulative time throttled
    memory_usage_bytes: int | None = None  # working set: usage minus inactive file cache
    memory_limit_bytes: int | None = None
    memory_limit_hits: int | None = None  # v1 memory.failcnt, v2 memory.events "max"
    oom_kills: int | None = None  # v1 memory.oom_control / v2 memory.events "oom_kill"
    cgroup_version: str = "v2"  # "v1", "v2" or "hybrid" (v1 controllers plus a v2 hierarchy)

    @property
    def source(self) -> str:
        """``container`` when a quota or a limit applies to either percentage, else ``host``."""
        return "container" if self.cpu_limit_cores or self.memory_limit_bytes else "host"

    @property
    def cpu_source(self) -> str:
        return "container" if self.cpu_percent is not None else "host"

    @property
    def memory_source(self) -> str:
        return "container" if self.memory_percent is not None else "host"


# --- container id ---------------------------------------------------------------------------

_HEX64 = r"[0-9a-f]{64}"
# The last path component names the runtime: docker-<id>.scope (systemd driver), <id> under
# /docker/ or a kubepods pod directory (cgroupfs driver), cri-containerd-<id>.scope,
# crio-<id>.scope, libpod-<id>.scope (podman). conmon's scope is the monitor, not the container.
_ID_PATTERNS = (
    re.compile(rf"(?:docker|cri-containerd|crio|libpod)-({_HEX64})\.scope$"),
    re.compile(rf"^(?:docker|crio|cri-containerd|libpod|containerd)-?({_HEX64})$"),
    re.compile(rf"^({_HEX64})$"),
)
# cgroup namespaces hide the path (v2: "0::/"), but the runtime's bind mounts still name the id.
_MOUNT_ID = re.compile(rf"/(?:docker/containers|overlay-containers)/({_HEX64})/")


def parse_container_id(cgroup_path: str) -> str | None:
    """The container id in a cgroup path, or None. Inner components win (podman nests)."""
    for part in reversed([p for p in cgroup_path.split("/") if p]):
        if "conmon" in part:
            continue
        for pattern in _ID_PATTERNS:
            match = pattern.search(part)
            if match:
                return match.group(1)
    return None


def container_id(root: str | os.PathLike[str] = "/") -> str | None:
    """This process's container id, from /proc/self/cgroup or, failing that, /proc/self/mountinfo."""
    base = Path(root)
    for _hierarchy, _controllers, path in _read_proc_cgroup(base):
        cid = parse_container_id(path)
        if cid:
            return cid
    for line in _read_lines(base / "proc/self/mountinfo"):
        match = _MOUNT_ID.search(line)
        if match:
            return match.group(1)
    return None


# --- reading cgroup files -------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.stat, memory.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in _read_lines(path):
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def _read_proc_cgroup(base: Path) -> list[tuple[str, list[str], str]]:
    entries = []
    for line in _read_lines(base / "proc/self/cgroup"):
        hierarchy, sep1, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if sep1 and sep2:
            entries.append((hierarchy, [c for c in controllers.split(",") if c], path or "/"))
    return entries


@dataclass(frozen=True)
class _Mount:
    point: Path  # where it is mounted, under ``root``
    root: str  # which cgroup is the mount's root
    controllers: frozenset[str]  # v1 only
    v2: bool


def _mounts(base: Path) -> list[_Mount]:
    mounts: list[_Mount] = []
    for line in _read_lines(base / "proc/self/mountinfo"):
        head, sep, tail = line.partition(" - ")
        fields, tail_fields = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(tail_fields) < 3:
            continue
        fstype, options = tail_fields[0], tail_fields[2].split(",")
        point = base / fields[4].lstrip("/")
        if fstype == "cgroup2":
            mounts.append(_Mount(point, fields[3], frozenset(), True))
        elif fstype == "cgroup":
            mounts.append(_Mount(point, fields[3], frozenset(o for o in options if o in _CONTROLLERS),
                                 False))
    if mounts:
        return mounts
    # No mountinfo (or one without cgroups): the standard layouts.
    cg = base / "sys/fs/cgroup"
    if (cg / "cgroup.controllers").exists():
        return [_Mount(cg, "/", frozenset(), True)]
    for name in ("cpu,cpuacct", "cpu", "cpuacct", "memory"):
        if (cg / name).is_dir():
            mounts.append(_Mount(cg / name, "/", frozenset(name.split(",")), False))
    if (cg / "unified" / "cgroup.controllers").exists():
        mounts.append(_Mount(cg / "unified", "/", frozenset(), True))
    return mounts


@dataclass(frozen=True)
class _Dir:
    """The process's cgroup directory in one hierarchy, and its ancestors up to the mount."""

    path: Path
    top: Path
    v2: bool

    def chain(self) -> Iterable[Path]:
        current = self.path
        while True:
            yield current
            if current == self.top or self.top not in current.parents:
                return
            current = current.parent


def _resolve(mount: _Mount, cgroup_path: str) -> _Dir:
    rel = cgroup_path
    mroot = mount.root.rstrip("/")
    if mroot and (rel == mroot or rel.startswith(mroot + "/")):
        rel = rel[len(mroot):]
    elif mroot:  # the path is outside the mounted subtree: the mount is our cgroup (namespaced)
        rel = "/"
    candidate = mount.point / rel.lstrip("/")
    if not candidate.is_dir():
        candidate = mount.point
    return _Dir(candidate, mount.point, mount.v2)


def _locate(base: Path) -> tuple[dict[str, _Dir], str] | None:
    """The cgroup directory serving each controller, and the cgroup version in use."""
    entries = _read_proc_cgroup(base)
    if not entries:
        return None
    mounts = _mounts(base)
    dirs: dict[str, _Dir] = {}
    v1_paths = {c: path for h, ctrls, path in entries if h != "0" for c in ctrls}
    v2_path = next((path for h, ctrls, path in entries if h == "0" and not ctrls), None)
    for ctrl in _CONTROLLERS:
        mount = next((m for m in mounts if not m.v2 and ctrl in m.controllers), None)
        if mount is not None and ctrl in v1_paths:
            dirs[ctrl] = _resolve(mount, v1_paths[ctrl])
    v2_mount = next((m for m in mounts if m.v2), None)
    if v2_mount is not None and v2_path is not None:
        v2_dir = _resolve(v2_mount, v2_path)
        if "cpu" not in dirs and _has_file(v2_dir, "cpu.max"):
            dirs["cpu"] = v2_dir
        if "cpuacct" not in dirs:
            dirs["cpuacct"] = v2_dir  # v2's cpu.stat usage_usec exists without the cpu controller
        if "memory" not in dirs and _has_file(v2_dir, "memory.current"):
            dirs["memory"] = v2_dir
    if not dirs:
        return None
    versions = {d.v2 for d in dirs.values()}
    if versions == {True}:
        version = "v2"
    elif v2_path is not None and v2_mount is not None:
        version = "hybrid"
    else:
        version = "v1"
    return dirs, version


def _has_file(d: _Dir, name: str) -> bool:
    return any((p / name).exists() for p in d.chain())


# --- the monitor ----------------------------------------------------------------------------


@dataclass
class _CpuReading:
    usage: float  # seconds
    wall: float  # seconds, monotonic


class ContainerMonitor:
    """Reads CPU against the quota and memory against the limit; None outside any cgroup."""

    def __init__(self, root: str | os.PathLike[str] = "/", *, min_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 host_memory_bytes: int | None = None) -> None:
        self._base = Path(root)
        self._min_interval = min_interval
        self._clock = clock
        self._host_memory = host_memory_bytes
        self._lock = threading.Lock()
        self._located = _locate(self._base)
        self._prev: _CpuReading | None = None
        self._last_cpu_percent: float | None = None
        self.sample()  # the priming reading: the next one has a CPU delta to work with

    @property
    def in_cgroup(self) -> bool:
        return self._located is not None

    def sample(self) -> ContainerSample | None:
        if self._located is None:
            return None
        dirs, version = self._located
        try:
            return self._sample(dirs, version)
        except Exception:  # a vanished or unreadable file must never break a scrape
            return None

    # -- cpu

    def _quota_cores(self, d: _Dir | None) -> float | None:
        if d is None:
            return None
        cores: list[float] = []
        for p in d.chain():
            if d.v2:
                text = _read_text(p / "cpu.max")
                if not text:
                    continue
                quota, _, period = text.partition(" ")
                if quota == "max":
                    continue
                try:
                    q, per = int(quota), int(period or "100000")
                except ValueError:
                    continue
            else:
                q_or_none = _read_int(p / "cpu.cfs_quota_us")
                per_or_none = _read_int(p / "cpu.cfs_period_us")
                if q_or_none is None or per_or_none is None:
                    continue
                q, per = q_or_none, per_or_none
            if q > 0 and per > 0:
                cores.append(q / per)
        return min(cores) if cores else None

    @staticmethod
    def _usage_seconds(d: _Dir | None) -> float | None:
        if d is None:
            return None
        if d.v2:
            usec = _read_keyed(d.path / "cpu.stat").get("usage_usec")
            return None if usec is None else usec / 1e6
        nsec = _read_int(d.path / "cpuacct.usage")
        return None if nsec is None else nsec / 1e9

    @staticmethod
    def _throttling(d: _Dir | None) -> tuple[int | None, int | None, float | None]:
        if d is None:
            return None, None, None
        stat = _read_keyed(d.path / "cpu.stat")
        if d.v2:
            usec = stat.get("throttled_usec")
            throttled = None if usec is None else usec / 1e6
        else:
            nsec = stat.get("throttled_time")
            throttled = None if nsec is None else nsec / 1e9
        return stat.get("nr_periods"), stat.get("nr_throttled"), throttled

    def _cpu_percent(self, usage: float | None, cores: float | None) -> float | None:
        if usage is None:
            return None
        now = self._clock()
        with self._lock:
            prev = self._prev
            if prev is None or usage < prev.usage or now < prev.wall:  # first reading, or a reset
                self._prev = _CpuReading(usage, now)
                self._last_cpu_percent = None
                return None
            elapsed = now - prev.wall
            if elapsed < self._min_interval or elapsed <= 0:
                return self._last_cpu_percent if cores else None
            self._prev = _CpuReading(usage, now)
            if not cores:
                self._last_cpu_percent = None
                return None
            self._last_cpu_percent = (usage - prev.usage) / (elapsed * cores) * 100.0
            return self._last_cpu_percent

    # -- memory

    def _host_memory_bytes(self) -> int | None:
        if self._host_memory is None:
            try:
                import psutil

                self._host_memory = int(psutil.virtual_memory().total)
            except Exception:
                return None
        return self._host_memory

    def _memory_limit(self, d: _Dir) -> int | None:
        limits: list[int] = []
        for p in d.chain():
            if d.v2:
                text = _read_text(p / "memory.max")
                if not text or text == "max":
                    continue
                try:
                    limits.append(int(text))
                except ValueError:
                    continue
            else:
                value = _read_int(p / "memory.limit_in_bytes")
                if value is not None and 0 < value < _UNLIMITED_BYTES:
                    limits.append(value)
        if not limits:
            return None
        limit = min(limits)
        host = self._host_memory_bytes()
        # A limit above the machine's memory never binds: the host's numbers are the real ones.
        return None if host and limit >= host else limit

    @staticmethod
    def _memory_usage(d: _Dir) -> int | None:
        usage = _read_int(d.path / ("memory.current" if d.v2 else "memory.usage_in_bytes"))
        if usage is None:
            return None
        stat = _read_keyed(d.path / "memory.stat")
        inactive = stat.get("inactive_file") if d.v2 else \
            stat.get("total_inactive_file", stat.get("inactive_file"))
        return max(usage - (inactive or 0), 0) if inactive is not None and inactive < usage else usage

    @staticmethod
    def _memory_events(d: _Dir) -> tuple[int | None, int | None]:
        """(limit hits, OOM kills)."""
        if d.v2:
            events = _read_keyed(d.path / "memory.events")
            return events.get("max"), events.get("oom_kill")
        oom = _read_keyed(d.path / "memory.oom_control")
        return _read_int(d.path / "memory.failcnt"), oom.get("oom_kill")

    # -- together

    def _sample(self, dirs: dict[str, _Dir], version: str) -> ContainerSample:
        cpu_dir, acct_dir, mem_dir = dirs.get("cpu"), dirs.get("cpuacct"), dirs.get("memory")
        cores = self._quota_cores(cpu_dir)
        usage = self._usage_seconds(acct_dir)
        if usage is None and cpu_dir is not None and cpu_dir.v2:
            usage = self._usage_seconds(cpu_dir)
        periods, throttled_periods, throttled_seconds = self._throttling(cpu_dir)
        cpu_percent = self._cpu_percent(usage, cores)
        mem_limit = mem_usage = hits = ooms = None
        if mem_dir is not None:
            mem_limit = self._memory_limit(mem_dir)
            mem_usage = self._memory_usage(mem_dir)
            hits, ooms = self._memory_events(mem_dir)
        mem_percent = (mem_usage / mem_limit * 100.0) if mem_limit and mem_usage is not None else None
        return ContainerSample(
            cpu_percent=cpu_percent,
            memory_percent=mem_percent,
            cpu_limit_cores=cores,
            cpu_usage_seconds=usage,
            cpu_periods=periods,
            cpu_throttled_periods=throttled_periods,
            cpu_throttled_seconds=throttled_seconds,
            memory_usage_bytes=mem_usage,
            memory_limit_bytes=mem_limit,
            memory_limit_hits=hits,
            oom_kills=ooms,
            cgroup_version=version,
        )


# --- telemetry ------------------------------------------------------------------------------

# Catalog name -> the ContainerSample field it reports (registered semconv names plus the CFS
# counters semconv has none for). Registered only once the catalog has it.
CONTAINER_SIGNALS: dict[str, str] = {
    "k8s.container.cpu.limit.current": "cpu_limit_cores",
    "sizewise.container.cpu.periods": "cpu_periods",
    "sizewise.container.cpu.throttled.periods": "cpu_throttled_periods",
    "sizewise.container.cpu.throttled.time": "cpu_throttled_seconds",
    "container.memory.working_set": "memory_usage_bytes",
    "k8s.container.memory.limit.current": "memory_limit_bytes",
    "sizewise.container.memory.oom_kills": "oom_kills",
}
