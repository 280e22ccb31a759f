"""The background writer: a bounded queue drained in batches by one thread, off the request path.

The queue carries what the request path captured cheaply (see ``ErrorTracker.capture_error``); the
writer's ``prepare`` callback turns each item into a scrubbed, fingerprinted :class:`ErrorEvent` here,
on this thread, before the batch is grouped and stored. An item that cannot be prepared is counted
as dropped (reason ``capture_failed``).

``submit`` never blocks: when the queue is full the event is refused and the caller counts it as
dropped. Store failures are retried with backoff for ``retry_seconds``; then the batch is dropped
(counted, reason ``store_unavailable``) and the writer carries on, so a dead database costs the
service nothing but the errors it could not keep. Retention cleanup runs on the same thread.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError

from sizewise_otel.errors.context import ErrorEvent
from sizewise_otel.errors.store import BatchResult, ErrorStore

log = structlog.get_logger("sizewise.errors.writer")

_STOP = object()


class EventWriter:
    def __init__(self, store_factory: Callable[[], ErrorStore], *, maxsize: int,
                 on_dropped: Callable[[str, int], None], on_result: Callable[[BatchResult], None],
                 retention_seconds: float, cleanup_interval: float = 3600.0, batch_size: int = 500,
                 retry_seconds: float = 30.0, prepare: Callable[[Any], ErrorEvent] | None = None) -> None:
        self._factory = store_factory
        self._prepare = prepare
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self._on_dropped = on_dropped
        self._on_result = on_result
        self.retention_seconds = retention_seconds
        self.cleanup_interval = cleanup_interval
        self.batch_size = batch_size
        self.retry_seconds = retry_seconds
        self.store: ErrorStore | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._next_cleanup = time.monotonic() + 5.0
        self._stopping = threading.Event()
        self.stats = {"stored": 0, "dropped": 0, "batches": 0, "store_failures": 0}
        self.last_error: str | None = None
        self.store_ok: bool | None = None

    # --- producer side (request path) -----------------------------------------------------------
    def submit(self, event: Any) -> bool:
        """Queue an event (or a raw capture for ``prepare``); False when the queue is full."""
        if self._thread is None or self._pid != os.getpid():
            self.start()
        try:
            self._queue.put_nowait(event)
            return True
        except queue.Full:
            return False

    @property
    def depth(self) -> int:
        return self._queue.qsize()

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
                self._queue = queue.Queue(self._queue.maxsize)
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = threading.Event()
            self._thread = threading.Thread(target=self._run, name="sizewise-error-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread = self._thread
            self._thread = None
        deadline = time.monotonic() + timeout
        if thread is not None and thread.is_alive():
            while True:
                try:
                    self._queue.put(_STOP, timeout=0.1)
                    break
                except queue.Full:
                    self._stopping.set()  # full: the writer is stuck on a dead store, tell it to give up
                    if time.monotonic() > deadline:
                        break
            thread.join(max(0.0, deadline - time.monotonic() - 0.5))
            self._stopping.set()  # a writer still retrying a dead store gives up now
            thread.join(0.5)
        leftover = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            if item is not _STOP:
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
            return self._queue.unfinished_tasks == 0
        deadline = time.monotonic() + timeout
        cond = self._queue.all_tasks_done
        with cond:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                cond.wait(min(remaining, 0.05))
        return True

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
        q = self._queue
        while True:
            try:
                first = q.get(timeout=0.5)
            except queue.Empty:
                self._maybe_cleanup()
                continue
            batch: list[ErrorEvent] = []
            stop = first is _STOP
            if not stop:
                batch.append(first)
            while len(batch) < self.batch_size and not stop:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                else:
                    batch.append(item)
            try:
                if batch:
                    events = self._prepare_batch(batch)
                    if events:
                        self._write(events)
            finally:
                for _ in range(len(batch) + (1 if stop else 0)):
                    q.task_done()
            if stop:
                return
            self._maybe_cleanup()

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
