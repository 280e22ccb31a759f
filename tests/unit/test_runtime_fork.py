"""After a fork, the child exports under its own ``service.instance.id`` (sizewise_otel/runtime/fork.py).

A real ``os.fork()`` proves it on the installed SDK; ``renew_identity`` called directly proves the
branch for SDKs that keep the parent's id (1.33 to 1.39), whichever SDK runs the test. The gunicorn
``--preload`` run is tests/integration/test_gunicorn_preload.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from sizewise_otel.instruments.system import SYSTEM_METRICS_CONFIG
from sizewise_otel.runtime.fork import INSTANCE_ID, renew_identity, renew_identity_after_fork


class Rig:
    """What runtime/fork.py reads of a Telemetry: its resource and its two providers, sharing it."""

    def __init__(self, instance: str) -> None:
        self.resource = Resource.create({"service.name": "svc", INSTANCE_ID: instance})
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], resource=self.resource,
                                            shutdown_on_exit=False)
        self.tracer_provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)


def rig(instance: str = "parent-id") -> Rig:
    return Rig(instance)


def exported_ids(tel: Any) -> dict[str, str]:
    tel.meter_provider.get_meter("t").create_counter("c").add(1)
    metric_resource = tel.reader.get_metrics_data().resource_metrics[0].resource
    span = tel.tracer_provider.get_tracer("t").start_span("s")
    span.end()
    return {"metrics": metric_resource.attributes[INSTANCE_ID], "spans": span.resource.attributes[INSTANCE_ID],
            "telemetry": tel.resource.attributes[INSTANCE_ID]}


def test_an_sdk_that_kept_the_parents_id_gets_a_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    tel = rig()
    new = renew_identity(tel, parent_id="parent-id")  # what the child sees when its SDK did not renew
    assert new not in (None, "parent-id")
    assert exported_ids(tel) == {"metrics": new, "spans": new, "telemetry": new}


def test_an_id_the_operator_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"{INSTANCE_ID}=pod-7")
    tel = rig("pod-7")
    assert renew_identity(tel, parent_id="pod-7") == "pod-7"
    assert set(exported_ids(tel).values()) == {"pod-7"}


def test_a_real_fork_exports_under_the_childs_own_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    tel = rig()
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    # The process's singleton (instrument() builds it): its process.* readings must follow the fork.
    system = SystemMetricsInstrumentor.__dict__.get("_instance") or SystemMetricsInstrumentor(
        config=SYSTEM_METRICS_CONFIG)
    renew_identity_after_fork(tel)
    renew_identity_after_fork(tel)  # once per Telemetry: a second registration is a no-op
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it exports, then leave without running pytest's teardown
        try:
            os.close(read_end)
            report = {**exported_ids(tel), "system_pid": system._proc.pid == os.getpid()}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = json.loads(pipe.read())
    assert os.waitpid(pid, 0)[1] == 0
    parent = exported_ids(tel)
    assert set(parent.values()) == {"parent-id"}  # the parent keeps its id
    assert child.pop("system_pid") is True  # the contrib system metrics read the child, not the parent
    assert len(set(child.values())) == 1 and child["metrics"] != "parent-id", child


def test_process_rss_reads_the_forked_child_not_the_parent() -> None:
    from sizewise_otel.instruments.system import SystemMetrics

    system = SystemMetrics()
    system.rss()  # bound to the parent before the fork, as under gunicorn --preload
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report which process the metric read, then leave at once
        os.close(read)
        os.write(write, f"{os.getpid()} {system._process.pid if system.rss() else -1}".encode())
        os._exit(0)
    os.close(write)
    child, measured = map(int, os.read(read, 100).decode().split())
    os.close(read)
    os.waitpid(pid, 0)
    assert measured == child != os.getpid()
