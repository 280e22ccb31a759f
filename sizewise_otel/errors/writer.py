"""The background writer: a bounded queue drained in batches by one thread, off the request path.

The queue carries what the request path captured cheaply (see ``ErrorTracker.capture_error``); the
writer's ``prepare`` callback turns each item into a scrubbed, fingerprinted :class:`ErrorEvent` here,
on this thread, before the batch is grouped and stored. An item that cannot be prepared is counted
as dropped (reason ``capture_failed``). ``on_taken`` sees every item as it leaves the queue (the
tracker counts ``sizewise.errors`` there, so the request path does not pay for the SDK's counter).

``submit`` never blocks and takes no lock: a ``deque`` append (atomic) after a length check, plus
an ``Event.set`` only when the writer sleeps idle (after a quiet ``linger_seconds``). When the queue
is full the event is refused and the caller counts it as dropped. Once woken the writer lingers
``linger_seconds`` to gather a batch, so a burst costs one transaction and one stretch of writer
work, not one per error. ``flush`` and ``stop`` put a marker in the queue and cut the linger short.
Store failures are retried with backoff for ``retry_seconds``; then the batch is dropped (counted,
reason ``store_unavailable``) and the writer carries on, so a dead database costs the service
nothing but the errors it could not keep. Retention cleanup runs on the same thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError

from sizewise_otel.errors.context import ErrorEvent
from sizewise_otel.errors.store import BatchResult, ErrorStore

log = structlog.get_logger("sizewise.errors.writer")

_STOP = object()
_IDLE_WAKE_SECONDS = 0.5  # idle: look at retention this often


class EventWriter:
    def __init__(self, store_factory: Callable[[], ErrorStore], *, maxsize: int,
                 on_dropped: Callable[[str, int], None], on_result: Callable[[BatchResult], None],
                 retention_seconds: float, cleanup_interval: float = 3600.0, batch_size: int = 500,
                 retry_seconds: float = 30.0, prepare: Callable[[Any], ErrorEvent] | None = None,
                 on_taken: Callable[[Sequence[Any]], None] | None = None, linger_seconds: float = 0.05) -> None:
        self._factory = store_factory
        self._prepare = prepare
        self._on_taken = on_taken
        self.maxsize = maxsize
        self._items: deque[Any] = deque()
        self._wake = threading.Event()  # set by the first submit after the writer went idle
        self._kick = threading.Event()  # flush/stop: no lingering
        self._idle = False
        self._on_dropped = on_dropped
        self._on_result = on_result
        self.retention_seconds = retention_seconds
        self.cleanup_interval = cleanup_interval
        self.batch_size = batch_size
        self.retry_seconds = retry_seconds
        self.linger_seconds = linger_seconds
        self.store: ErrorStore | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._next_cleanup = time.monotonic() + 5.0
        self._stopping = threading.Event()
        self.stats = {"stored": 0, "dropped": 0, "batches": 0, "store_failures": 0}
        self.last_error: str | None = None
        self.store_ok: bool | None = None
        _writers.add(self)

    # --- producer side (request path) -----------------------------------------------------------
    def submit(self, event: Any) -> bool:
        """Queue an event (or a raw capture for ``prepare``); False when the queue is full."""
        if self._thread is None:  # not started, or forked (see _forget_threads)
            self.start()
        items = self._items
        if len(items) >= self.maxsize:
            return False
        items.append(event)
        if self._idle:
            self._idle = False
            self._wake.set()
        return True

    @property
    def depth(self) -> int:
        return sum(1 for item in list(self._items) if not _is_marker(item))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread and connections are not ours
                self._pid = os.getpid()
                self._thread = None
                if self.store is not None:
                    with contextlib.suppress(Exception):
                        self.store.engine.dispose(close=False)  # never close the parent's sockets
                self.store = None
                self._items = deque()
                self._wake, self._kick = threading.Event(), threading.Event()
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = threading.Event()
            self._thread = threading.Thread(target=self._run, name="sizewise-error-writer", daemon=True)
            self._thread.start()

    def forget_thread(self) -> None:
        """After a fork: the thread is the parent's; the next ``submit`` starts this process's own."""
        self._thread = None

    def _nudge(self) -> None:
        self._kick.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread = self._thread
            self._thread = None
        deadline = time.monotonic() + timeout
        if thread is not None and thread.is_alive():
            self._items.append(_STOP)
            self._nudge()
            if self.store_ok is False:
                self._stopping.set()  # the store is down: what is queued cannot be kept, don't wait for it
            thread.join(max(0.0, deadline - time.monotonic() - 0.5))
            self._stopping.set()  # a writer still retrying a dead store gives up now
            thread.join(0.5)
        leftover = 0
        while self._items:
            item = self._items.popleft()
            if isinstance(item, threading.Event):
                item.set()  # a flush waiting on it: nothing more will be stored
            elif item is not _STOP:
                leftover += 1
        if leftover:
            self._drop("shutdown", leftover)
        if self.store is not None and (thread is None or not thread.is_alive()):
            with contextlib.suppress(Exception):
                self.store.dispose()
            self.store = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted event is stored or dropped. True when the queue drained."""
        if not self.running:
            return self.depth == 0
        marker = threading.Event()
        self._items.append(marker)
        self._nudge()
        return marker.wait(timeout)

    # --- consumer side (writer thread) ----------------------------------------------------------
    def _ensure_store(self) -> ErrorStore:
        if self.store is None:
            store = self._factory()
            try:
                store.create_schema()
            except Exception:
                store.dispose()
                raise
            self.store = store
        return self.store

    def _run(self) -> None:
        items = self._items
        while True:
            if not items and self.linger_seconds > 0 and not self._kick.is_set():
                # Stay awake one more linger while errors flow: a submit only wakes an idle writer,
                # and under steady errors none has to.
                self._kick.wait(self.linger_seconds)
            if not items:
                self._idle = True
                if not items:  # re-checked after publishing idle: a submit in between is seen
                    self._wake.wait(_IDLE_WAKE_SECONDS)
                    self._wake.clear()
                    self._maybe_cleanup()
                    continue
                self._idle = False
            elif len(items) < self.batch_size and not self._kick.is_set() and self.linger_seconds > 0:
                self._kick.wait(self.linger_seconds)  # gather a batch (flush/stop cut this short)
            self._kick.clear()
            batch: list[Any] = []
            markers: list[threading.Event] = []
            stop = False
            while items and len(batch) < self.batch_size:
                item = items.popleft()
                if item is _STOP:
                    stop = True
                    break
                if isinstance(item, threading.Event):
                    markers.append(item)
                    break  # everything before the marker is in this batch
                batch.append(item)
            try:
                if batch:
                    self._take(batch)
                    events = self._prepare_batch(batch)
                    if events:
                        self._write(events)
            finally:
                for marker in markers:
                    marker.set()
            if stop:
                return
            self._maybe_cleanup()

    def _take(self, batch: Sequence[Any]) -> None:
        if self._on_taken is None:
            return
        try:
            self._on_taken(batch)
        except Exception as exc:
            log.warning("error counting failed", error=type(exc).__name__)

    def _prepare_batch(self, batch: Sequence[Any]) -> list[ErrorEvent]:
        prepare = self._prepare
        if prepare is None:
            return list(batch)
        events: list[ErrorEvent] = []
        failed, last = 0, ""
        for item in batch:
            try:
                events.append(prepare(item))
            except Exception as exc:
                failed += 1
                last = type(exc).__name__
        if failed:
            log.warning("error events could not be prepared", count=failed, error=last)
            self._drop("capture_failed", failed)
        return events

    def _write(self, batch: Sequence[ErrorEvent]) -> None:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                store = self._ensure_store()
                result = store.write_batch(batch)
            except (OperationalError, DBAPIError, OSError) as exc:
                self._failed(exc)
                if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError) \
                        and not exc.connection_invalidated:
                    self._write_one_by_one(batch)  # a value the database refuses: isolate it
                    return
                if time.monotonic() + delay > deadline:
                    self._drop("store_unavailable", len(batch))
                    return
                if self._stopping.wait(delay):
                    self._drop("shutdown", len(batch))
                    return
                delay = min(delay * 2, 2.0)
                continue
            except Exception as exc:
                self._failed(exc)
                self._drop("store_unavailable", len(batch))
                return
            self.stats["stored"] += result.stored
            self.stats["batches"] += 1
            if not self.store_ok:
                if self.store_ok is False:
                    log.info("error store available again")
                self.store_ok = True
            try:
                self._on_result(result)
            except Exception as exc:
                log.warning("error signal handling failed", error=type(exc).__name__)
            return

    def _write_one_by_one(self, batch: Sequence[ErrorEvent]) -> None:
        for ev in batch:
            try:
                result = self._ensure_store().write_batch([ev])
            except Exception:
                self._drop("store_unavailable", 1)
                continue
            self.stats["stored"] += 1
            with contextlib.suppress(Exception):
                self._on_result(result)

    def _failed(self, exc: BaseException) -> None:
        self.stats["store_failures"] += 1
        self.last_error = type(exc).__name__
        if self.store_ok is not False:  # log once per outage, never the statement or parameters
            log.warning("error store unavailable; events will be dropped until it returns",
                        error=type(exc).__name__)
        self.store_ok = False

    def _drop(self, reason: str, n: int) -> None:
        self.stats["dropped"] += n
        with contextlib.suppress(Exception):
            self._on_dropped(reason, n)

    def _maybe_cleanup(self, force: bool = False) -> dict[str, int] | None:
        now = time.monotonic()
        if not force and now < self._next_cleanup:
            return None
        self._next_cleanup = now + self.cleanup_interval
        try:
            deleted = self._ensure_store().cleanup(time.time() - self.retention_seconds)
        except Exception as exc:
            self._failed(exc)
            return None
        if any(deleted.values()):
            log.info("error retention cleanup", **deleted)
        return deleted


_writers: weakref.WeakSet[EventWriter] = weakref.WeakSet()


def _forget_threads() -> None:
    """In a forked child no writer thread runs: the next submit starts one (``start`` resets the rest)."""
    for writer in list(_writers):
        writer.forget_thread()


os.register_at_fork(after_in_child=_forget_threads)


def _is_marker(item: Any) -> bool:
    return item is _STOP or isinstance(item, threading.Event)
