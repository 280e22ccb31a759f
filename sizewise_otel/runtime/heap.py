"""Freezing the start-up heap, so the cyclic GC's full collections scan only what serving allocates.

Instrumentation allocates per request (span contexts, attribute dicts, sampled spans waiting in the
export queue), and under load those allocations trigger CPython's generational collections a little
more often than a bare app's do. Each third-generation collection walks every tracked object in
the process: a FastAPI app with the SDK, pydantic models and SQLAlchemy loaded holds about 100,000,
so a full collection pauses the event loop for 40-60 ms on the 2-core test machine (measured;
docs/performance.md). Nearly all of those objects are created at import and start-up and live until
exit. ``gc.freeze()`` moves them to the permanent generation, which collections skip: a full
collection then scans the few thousand objects allocated since, a pause of a few milliseconds.

Frozen objects are never collected, so the heap is collected once first (garbage made during
start-up is freed, not frozen). This is the standard CPython tool for long-running servers (the
``gc`` docs recommend it before forking workers); ``SIZEWISE_GC_FREEZE=false`` turns it off.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

# gc.collect() returns without collecting while another thread's collection is running (CPython
# sets a "collecting" flag; a finalizer that releases the GIL lets this thread in meanwhile), so a
# collection is only trusted once the gc callback saw this thread's full collection finish.
_WAIT_SECONDS = 2.0  # then freeze anyway: a little garbage frozen beats a start-up that hangs


def freeze_startup_heap() -> int:
    """Collect, then freeze every tracked object; returns how many objects are now frozen."""
    _collect_fully()  # its helper objects are gone by now, so none are frozen then freed
    gc.freeze()
    return gc.get_freeze_count()


def _collect_fully() -> None:
    me = threading.get_ident()
    finished: list[bool] = []

    def saw(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info.get("generation") == 2 and threading.get_ident() == me:
            finished.append(True)

    gc.callbacks.append(saw)
    try:
        deadline = time.monotonic() + _WAIT_SECONDS
        while True:
            gc.collect()
            if finished or time.monotonic() > deadline:
                return
            time.sleep(0.001)  # let the other thread's collection end
    finally:
        gc.callbacks.remove(saw)
