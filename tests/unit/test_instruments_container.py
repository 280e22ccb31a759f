"""Container-aware resource readings from cgroup v1, v2 and hybrid trees built in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from sizewise_otel.instruments import container as container_mod
from sizewise_otel.instruments.container import (
    CONTAINER_SIGNALS,
    ContainerMonitor,
    container_id,
    parse_container_id,
)
from sizewise_otel.instruments.system import register_container_metrics

CID = ("3f4a0123456789abcdef" * 4)[:64]
GIB = 1 << 30
MIB = 1 << 20
HOST_MEMORY = 64 * GIB


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


def mountinfo(*lines: tuple[str, str, str, str]) -> str:
    """(mount point, cgroup root, fstype, super options) -> /proc/self/mountinfo lines."""
    return "\n".join(
        f"{30 + i} 20 0:{40 + i} {root} {point} rw,nosuid - {fstype} {fstype} {opts}"
        for i, (point, root, fstype, opts) in enumerate(lines)
    )


def monitor(root: Path, clock: Clock) -> ContainerMonitor:
    return ContainerMonitor(root, clock=clock, host_memory_bytes=HOST_MEMORY)


# --- cgroup v2 ------------------------------------------------------------------------------


def v2_tree(root: Path, *, cpu_max: str = "50000 100000", memory_max: str = str(512 * MIB)) -> None:
    """A container with its own cgroup namespace: /proc/self/cgroup says 0::/."""
    write(root, "proc/self/cgroup", "0::/")
    write(root, "proc/self/mountinfo", mountinfo(("/sys/fs/cgroup", "/", "cgroup2", "rw")))
    cg = "sys/fs/cgroup"
    write(root, f"{cg}/cgroup.controllers", "cpuset cpu io memory pids")
    write(root, f"{cg}/cpu.max", cpu_max)
    write(root, f"{cg}/cpu.stat", "usage_usec 1000000\nuser_usec 800000\nsystem_usec 200000\n"
          "nr_periods 10\nnr_throttled 3\nthrottled_usec 250000\n")
    write(root, f"{cg}/memory.max", memory_max)
    write(root, f"{cg}/memory.current", str(256 * MIB))
    write(root, f"{cg}/memory.stat", f"anon {128 * MIB}\nfile {128 * MIB}\ninactive_file {64 * MIB}\n")
    write(root, f"{cg}/memory.events", "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n")


def test_v2_limits_throttling_and_oom(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    clock = Clock()
    mon = monitor(tmp_path, clock)
    first = mon.sample()
    assert first is not None
    assert first.cgroup_version == "v2"
    assert first.cpu_percent is None  # the constructor primed; no time has passed
    assert first.cpu_limit_cores == pytest.approx(0.5)
    assert first.cpu_usage_seconds == pytest.approx(1.0)
    assert (first.cpu_periods, first.cpu_throttled_periods) == (10, 3)
    assert first.cpu_throttled_seconds == pytest.approx(0.25)
    assert first.memory_limit_bytes == 512 * MIB
    assert first.memory_usage_bytes == 192 * MIB  # working set: current - inactive_file
    assert first.memory_percent == pytest.approx(37.5)
    assert (first.memory_limit_hits, first.oom_kills) == (5, 2)
    assert first.source == "container"  # limits apply...
    assert first.cpu_source == "host"  # ...but CPU has no delta yet
    assert first.memory_source == "container"

    # 2 s later the cgroup used 0.5 CPU-seconds more: 0.5 / (2 s x 0.5 cores) = 50 %.
    write(tmp_path, "sys/fs/cgroup/cpu.stat", "usage_usec 1500000\nnr_periods 30\nnr_throttled 4\n"
          "throttled_usec 300000\n")
    write(tmp_path, "sys/fs/cgroup/memory.events", "max 6\noom_kill 3\n")
    clock.now += 2.0
    second = mon.sample()
    assert second is not None
    assert second.cpu_percent == pytest.approx(50.0)
    assert second.cpu_source == "container" and second.source == "container"
    assert (second.cpu_periods, second.cpu_throttled_periods) == (30, 4)
    assert second.cpu_throttled_seconds == pytest.approx(0.3)
    assert second.oom_kills == 3

    # Asked again within min_interval (CPU then memory in one scrape): same value, no noise.
    clock.now += 0.01
    again = mon.sample()
    assert again is not None and again.cpu_percent == pytest.approx(50.0)

    # Then a full second at a full core: 1.0 / (1 s x 0.5 cores) = 200 % is a burst the quota allows
    # (cpu.max burst); the reading reports it rather than hiding it.
    write(tmp_path, "sys/fs/cgroup/cpu.stat", "usage_usec 2500000\n")
    clock.now += 1.0
    assert mon.sample().cpu_percent == pytest.approx(200.0, rel=0.02)  # type: ignore[union-attr]


def test_v2_unlimited_means_host(tmp_path: Path) -> None:
    v2_tree(tmp_path, cpu_max="max 100000", memory_max="max")
    clock = Clock()
    mon = monitor(tmp_path, clock)
    write(tmp_path, "sys/fs/cgroup/cpu.stat", "usage_usec 2000000\n")
    clock.now += 5
    sample = mon.sample()
    assert sample is not None
    assert sample.cpu_percent is None and sample.cpu_limit_cores is None
    assert sample.memory_percent is None and sample.memory_limit_bytes is None
    assert sample.memory_usage_bytes == 192 * MIB
    assert sample.source == sample.cpu_source == sample.memory_source == "host"
    assert sample.oom_kills == 2  # counted even without a limit (host-wide OOM killer)


def test_v2_limit_above_host_memory_is_unlimited(tmp_path: Path) -> None:
    v2_tree(tmp_path, memory_max=str(2 * HOST_MEMORY))
    sample = monitor(tmp_path, Clock()).sample()
    assert sample is not None and sample.memory_percent is None


def test_v2_limit_on_a_parent_cgroup_applies(tmp_path: Path) -> None:
    """No namespace: the process sits in /app.slice/worker, the limits are on /app.slice."""
    write(tmp_path, "proc/self/cgroup", "0::/app.slice/worker")
    write(tmp_path, "proc/self/mountinfo", mountinfo(("/sys/fs/cgroup", "/", "cgroup2", "rw")))
    cg = "sys/fs/cgroup/app.slice"
    write(tmp_path, f"{cg}/cpu.max", "200000 100000")
    write(tmp_path, f"{cg}/memory.max", str(GIB))
    write(tmp_path, f"{cg}/worker/cpu.max", "max 100000")
    write(tmp_path, f"{cg}/worker/memory.max", "max")
    write(tmp_path, f"{cg}/worker/memory.current", str(256 * MIB))
    write(tmp_path, f"{cg}/worker/cpu.stat", "usage_usec 0\n")
    clock = Clock()
    mon = monitor(tmp_path, clock)
    write(tmp_path, f"{cg}/worker/cpu.stat", "usage_usec 1000000\n")
    clock.now += 1
    sample = mon.sample()
    assert sample is not None
    assert sample.cpu_limit_cores == pytest.approx(2.0)
    assert sample.cpu_percent == pytest.approx(50.0)
    assert sample.memory_percent == pytest.approx(25.0)


def test_v2_without_mountinfo_uses_standard_mount(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    (tmp_path / "proc/self/mountinfo").unlink()
    sample = monitor(tmp_path, Clock()).sample()
    assert sample is not None and sample.memory_percent == pytest.approx(37.5)


# --- cgroup v1 ------------------------------------------------------------------------------


def v1_tree(root: Path, *, quota: int = 200000, limit: int = GIB, path: str = f"/docker/{CID}",
            oom_control: bool = True) -> None:
    """Docker without a cgroup namespace: the container's cgroup bind-mounted at each controller."""
    write(root, "proc/self/cgroup",
          f"12:memory:{path}\n11:cpu,cpuacct:{path}\n10:pids:{path}\n1:name=systemd:{path}\n")
    write(root, "proc/self/mountinfo", mountinfo(
        ("/sys/fs/cgroup", "/", "tmpfs", "rw"),
        ("/sys/fs/cgroup/cpu,cpuacct", path, "cgroup", "rw,cpu,cpuacct"),
        ("/sys/fs/cgroup/memory", path, "cgroup", "rw,memory"),
        ("/sys/fs/cgroup/pids", path, "cgroup", "rw,pids"),
    ))
    cpu, mem = "sys/fs/cgroup/cpu,cpuacct", "sys/fs/cgroup/memory"
    write(root, f"{cpu}/cpu.cfs_quota_us", str(quota))
    write(root, f"{cpu}/cpu.cfs_period_us", "100000")
    write(root, f"{cpu}/cpuacct.usage", str(3 * 10**9))
    write(root, f"{cpu}/cpu.stat", "nr_periods 100\nnr_throttled 7\nthrottled_time 1500000000\n")
    write(root, f"{mem}/memory.limit_in_bytes", str(limit))
    write(root, f"{mem}/memory.usage_in_bytes", str(600 * MIB))
    write(root, f"{mem}/memory.stat", f"cache {200 * MIB}\nrss {400 * MIB}\ninactive_file {50 * MIB}\n"
          f"total_inactive_file {88 * MIB}\n")
    write(root, f"{mem}/memory.failcnt", "9")
    if oom_control:
        write(root, f"{mem}/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")


def test_v1_limits_throttling_and_oom(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    clock = Clock()
    mon = monitor(tmp_path, clock)
    first = mon.sample()
    assert first is not None
    assert first.cgroup_version == "v1"
    assert first.cpu_limit_cores == pytest.approx(2.0)
    assert first.cpu_usage_seconds == pytest.approx(3.0)
    assert (first.cpu_periods, first.cpu_throttled_periods) == (100, 7)
    assert first.cpu_throttled_seconds == pytest.approx(1.5)
    assert first.memory_limit_bytes == GIB
    assert first.memory_usage_bytes == 512 * MIB  # usage - total_inactive_file
    assert first.memory_percent == pytest.approx(50.0)
    assert (first.memory_limit_hits, first.oom_kills) == (9, 1)

    # 4 s later, 3 CPU-seconds more on a 2-core quota: 3 / (4 x 2) = 37.5 %.
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", str(6 * 10**9))
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.stat",
          "nr_periods 140\nnr_throttled 9\nthrottled_time 2000000000\n")
    clock.now += 4
    second = mon.sample()
    assert second is not None
    assert second.cpu_percent == pytest.approx(37.5)
    assert second.cpu_throttled_periods == 9
    assert second.cpu_throttled_seconds == pytest.approx(2.0)


def test_v1_unlimited_means_host(tmp_path: Path) -> None:
    v1_tree(tmp_path, quota=-1, limit=9223372036854771712, oom_control=False)
    clock = Clock()
    mon = monitor(tmp_path, clock)
    clock.now += 5
    sample = mon.sample()
    assert sample is not None
    assert sample.cpu_percent is None and sample.memory_percent is None
    assert sample.source == "host"
    assert sample.oom_kills is None  # kernels before 4.13 have no oom_kill line
    assert sample.memory_limit_hits == 9


def test_v1_counter_reset_reprimes(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    clock = Clock()
    mon = monitor(tmp_path, clock)
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", "0")
    clock.now += 2
    assert mon.sample().cpu_percent is None  # type: ignore[union-attr]
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", str(10**9))
    clock.now += 2
    assert mon.sample().cpu_percent == pytest.approx(25.0)  # type: ignore[union-attr]


def test_v1_separate_controller_dirs_without_mountinfo(tmp_path: Path) -> None:
    """Standard layout, no mountinfo: /sys/fs/cgroup/{cpu,cpuacct,memory}, host-view paths."""
    path = f"/kubepods/burstable/pod1b2c/{CID}"
    write(tmp_path, "proc/self/cgroup", f"5:memory:{path}\n3:cpuacct:{path}\n2:cpu:{path}\n")
    write(tmp_path, f"sys/fs/cgroup/cpu{path}/cpu.cfs_quota_us", "50000")
    write(tmp_path, f"sys/fs/cgroup/cpu{path}/cpu.cfs_period_us", "100000")
    write(tmp_path, f"sys/fs/cgroup/cpuacct{path}/cpuacct.usage", "0")
    write(tmp_path, f"sys/fs/cgroup/memory{path}/memory.limit_in_bytes", str(GIB))
    write(tmp_path, f"sys/fs/cgroup/memory{path}/memory.usage_in_bytes", str(GIB // 4))
    clock = Clock()
    mon = monitor(tmp_path, clock)
    write(tmp_path, f"sys/fs/cgroup/cpuacct{path}/cpuacct.usage", str(10**9 // 4))
    clock.now += 1
    sample = mon.sample()
    assert sample is not None
    assert sample.cpu_percent == pytest.approx(50.0)
    assert sample.memory_percent == pytest.approx(25.0)
    assert container_id(tmp_path) == CID


# --- hybrid ---------------------------------------------------------------------------------


def test_hybrid_v1_controllers_win(tmp_path: Path) -> None:
    """systemd hybrid: v1 controllers plus an empty v2 hierarchy at /sys/fs/cgroup/unified."""
    v1_tree(tmp_path)
    cgroup = (tmp_path / "proc/self/cgroup").read_text() + "0::/\n"
    write(tmp_path, "proc/self/cgroup", cgroup)
    info = (tmp_path / "proc/self/mountinfo").read_text()
    write(tmp_path, "proc/self/mountinfo",
          info + mountinfo(("/sys/fs/cgroup/unified", "/", "cgroup2", "rw")))
    write(tmp_path, "sys/fs/cgroup/unified/cgroup.controllers", "")
    write(tmp_path, "sys/fs/cgroup/unified/cpu.stat", "usage_usec 999999999\n")
    sample = monitor(tmp_path, Clock()).sample()
    assert sample is not None
    assert sample.cgroup_version == "hybrid"
    assert sample.cpu_usage_seconds == pytest.approx(3.0)  # cpuacct (v1), not the unified tree
    assert sample.memory_percent == pytest.approx(50.0)


def test_hybrid_cpu_on_v2_memory_on_v1(tmp_path: Path) -> None:
    """The CPU controller on the v2 hierarchy, memory on v1 (as on some CI machines)."""
    write(tmp_path, "proc/self/cgroup", "4:memory:/sandbox/abc\n0::/\n")
    write(tmp_path, "proc/self/mountinfo", mountinfo(
        ("/sys/fs/cgroup/memory", "/", "cgroup", "rw,memory"),
        ("/sys/fs/cgroup/unified", "/", "cgroup2", "rw"),
    ))
    write(tmp_path, "sys/fs/cgroup/memory/sandbox/abc/memory.limit_in_bytes", str(2 * GIB))
    write(tmp_path, "sys/fs/cgroup/memory/sandbox/abc/memory.usage_in_bytes", str(GIB))
    write(tmp_path, "sys/fs/cgroup/memory/sandbox/abc/memory.oom_control", "oom_kill 4\n")
    write(tmp_path, "sys/fs/cgroup/unified/cpu.max", "100000 100000")
    write(tmp_path, "sys/fs/cgroup/unified/cpu.stat", "usage_usec 0\nnr_periods 0\nnr_throttled 0\n"
          "throttled_usec 0\n")
    clock = Clock()
    mon = monitor(tmp_path, clock)
    write(tmp_path, "sys/fs/cgroup/unified/cpu.stat", "usage_usec 300000\nnr_periods 10\n"
          "nr_throttled 2\nthrottled_usec 40000\n")
    clock.now += 1
    sample = mon.sample()
    assert sample is not None
    assert sample.cgroup_version == "hybrid"
    assert sample.cpu_percent == pytest.approx(30.0)
    assert sample.cpu_throttled_periods == 2
    assert sample.memory_percent == pytest.approx(50.0)
    assert sample.oom_kills == 4


# --- outside any cgroup, container ids ------------------------------------------------------


def test_no_cgroup_files(tmp_path: Path) -> None:
    mon = monitor(tmp_path, Clock())
    assert not mon.in_cgroup
    assert mon.sample() is None
    assert container_id(tmp_path) is None


@pytest.mark.parametrize(("path", "expected"), [
    (f"/docker/{CID}", CID),
    (f"/system.slice/docker-{CID}.scope", CID),
    (f"/kubepods/besteffort/pod0b1c2d3e-aaaa-bbbb-cccc-0123456789ab/{CID}", CID),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b1c2d3e_aaaa.slice/"
     f"cri-containerd-{CID}.scope", CID),
    (f"/kubepods.slice/kubepods-pod0b1c.slice/crio-{CID}.scope", CID),
    (f"/kubepods/burstable/pod0b1c/crio-{CID}", CID),
    (f"/machine.slice/libpod-{CID}.scope/container", CID),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope", CID),
    (f"/machine.slice/libpod-conmon-{CID}.scope", None),
    ("/", None),
    ("/user.slice/user-1000.slice/session-3.scope", None),
    ("/process_api/c4af5a4240a2c801965f4c683f11f748", None),
])
def test_parse_container_id(path: str, expected: str | None) -> None:
    assert parse_container_id(path) == expected


def test_container_id_from_mountinfo_when_namespaced(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/")
    write(tmp_path, "proc/self/mountinfo",
          f"612 600 254:1 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n")
    assert container_id(tmp_path) == CID


def test_container_id_from_proc_cgroup(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    assert container_id(tmp_path) == CID


# --- this machine ---------------------------------------------------------------------------


def test_this_machine_is_consistent() -> None:
    """Whatever this machine has: a consistent reading, or None outside any cgroup."""
    mon = ContainerMonitor(min_interval=0.0)
    sample = mon.sample()
    if not Path("/proc/self/cgroup").exists():
        assert sample is None
        return
    if sample is None:
        assert not mon.in_cgroup
        return
    assert sample.cgroup_version in ("v1", "v2", "hybrid")
    if sample.cpu_limit_cores is None:
        assert sample.cpu_percent is None and sample.cpu_source == "host"
    else:
        assert sample.cpu_limit_cores > 0
        assert sample.cpu_percent is None or sample.cpu_percent >= 0
    if sample.memory_limit_bytes is None:
        assert sample.memory_percent is None and sample.memory_source == "host"
    else:
        assert sample.memory_usage_bytes is not None
        assert sample.memory_percent == pytest.approx(
            sample.memory_usage_bytes / sample.memory_limit_bytes * 100)
    assert sample.source == ("container" if sample.cpu_limit_cores or sample.memory_limit_bytes
                             else "host")
    for counter in (sample.cpu_usage_seconds, sample.cpu_periods, sample.cpu_throttled_periods,
                    sample.oom_kills, sample.memory_usage_bytes):
        assert counter is None or counter >= 0
    if sample.cpu_usage_seconds is not None:
        sum(range(200_000))  # burn a little CPU: usage only grows
        later = mon.sample()
        assert later is not None and later.cpu_usage_seconds is not None
        assert later.cpu_usage_seconds >= sample.cpu_usage_seconds


def test_system_metrics_label_the_source() -> None:
    from sizewise_otel.instruments.system import SystemMetrics

    metrics = SystemMetrics()
    sample = metrics._container.sample()
    (cpu_value, cpu_attrs), = metrics.cpu()
    (_, mem_attrs), = metrics.memory()
    expected_cpu = sample.cpu_source if sample else "host"
    expected_mem = sample.memory_source if sample else "host"
    assert cpu_attrs == {"sizewise.usage.source": expected_cpu}
    assert mem_attrs == {"sizewise.usage.source": expected_mem}
    assert cpu_value >= 0


# --- registration ---------------------------------------------------------------------------


class FakeTelemetry:
    def __init__(self) -> None:
        self.callbacks: dict[str, object] = {}

    def observe(self, name: str, callback: object) -> None:
        self.callbacks[name] = callback


def test_register_container_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sizewise_otel.catalog as catalog

    v2_tree(tmp_path)
    mon = monitor(tmp_path, Clock())
    known = set(CONTAINER_SIGNALS) - {"k8s.container.cpu.limit.current"}
    real_signal = catalog.signal

    def fake_signal(name: str) -> object:
        if name not in known:
            raise KeyError(name)
        return real_signal(name)

    monkeypatch.setattr(catalog, "signal", fake_signal)
    telemetry = FakeTelemetry()
    names = register_container_metrics(telemetry, mon)  # type: ignore[arg-type]
    assert set(names) == known == set(telemetry.callbacks)
    values = {n: cb() for n, cb in telemetry.callbacks.items()}  # type: ignore[operator]
    assert values["sizewise.container.cpu.throttled.periods"] == [(3.0, {})]
    assert values["sizewise.container.cpu.throttled.time"] == [(0.25, {})]
    assert values["sizewise.container.memory.oom_kills"] == [(2.0, {})]
    assert values["k8s.container.memory.limit.current"] == [(float(512 * MIB), {})]


def test_register_outside_a_cgroup_registers_nothing(tmp_path: Path) -> None:
    telemetry = FakeTelemetry()
    assert register_container_metrics(telemetry, monitor(tmp_path, Clock())) == []  # type: ignore[arg-type]
    assert telemetry.callbacks == {}


def test_catalog_names_are_well_formed() -> None:
    for name, attr in CONTAINER_SIGNALS.items():
        assert name.startswith(("sizewise.container.", "container.", "k8s.container."))
        assert attr in container_mod.ContainerSample.__dataclass_fields__
