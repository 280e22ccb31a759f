"""The start-up heap is frozen once start-up is over, unless SIZEWISE_GC_FREEZE=false."""

from __future__ import annotations

import gc
import threading
import time

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from sizewise_otel import instrument
from sizewise_otel.runtime.heap import freeze_startup_heap
from sizewise_otel.settings import Settings


@pytest.fixture(autouse=True)
def _unfrozen() -> object:
    gc.unfreeze()
    yield
    gc.unfreeze()  # give the rest of the test session its collections back


def test_freeze_collects_first_then_freezes_what_lives() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a reference cycle: garbage only the cyclic GC can free

    Node()
    kept = Node()
    frozen = freeze_startup_heap()
    assert frozen == gc.get_freeze_count() > 0
    assert not any(type(o) is Node and o is not kept for o in gc.get_objects())  # collected, not frozen
    assert kept not in gc.get_objects()  # frozen objects are out of the collector's reach
    gc.unfreeze()
    assert any(o is kept for o in gc.get_objects())


def test_freeze_waits_out_another_threads_collection() -> None:
    """gc.collect() is a no-op while another thread collects; the garbage must still not be frozen."""

    class Node:
        def __init__(self) -> None:
            self.me = self

    in_finalizer, release = threading.Event(), threading.Event()

    class SlowFinalizer:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:  # runs inside the other thread's collection, GIL released
            in_finalizer.set()
            release.wait(5)

    def other_thread() -> None:
        SlowFinalizer()
        gc.collect()

    worker = threading.Thread(target=other_thread)
    worker.start()
    assert in_finalizer.wait(5)
    Node()
    releaser = threading.Timer(0.05, release.set)  # the other collection ends while we retry
    releaser.start()
    started = time.monotonic()
    freeze_startup_heap()
    worker.join(5)
    releaser.join(5)
    assert time.monotonic() - started >= 0.04  # it waited for the other collection instead of skipping
    assert not any(type(o) is Node for o in gc.get_objects())
    gc.unfreeze()
    assert not any(type(o) is Node for o in gc.get_objects())  # collected, never frozen


@pytest.mark.parametrize("enabled", [True, False])
def test_instrument_freezes_after_startup_only_when_enabled(enabled: bool) -> None:
    app = FastAPI()
    started: list[int] = []

    @app.on_event("startup")
    async def record() -> None:  # the app's own start-up runs before the freeze
        started.append(gc.get_freeze_count())

    instrument(app, settings=Settings(error_store_url="sqlite://", sizewise_gc_freeze=enabled))
    assert gc.get_freeze_count() == 0
    with TestClient(app):
        assert started == [0]
        assert (gc.get_freeze_count() > 10_000) is enabled
