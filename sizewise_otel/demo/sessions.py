"""User sessions for the demo: bounded in-memory store feeding ``sizewise.sessions.active``."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from typing import Any


class SessionStore:
    """At most ``max_sessions`` live sessions (oldest evicted), each expiring after ``ttl`` seconds."""

    def __init__(self, gauge: Any, *, ttl: float = 1800.0, max_sessions: int = 10_000) -> None:
        self._sessions: OrderedDict[str, float] = OrderedDict()
        self._gauge = gauge
        self.ttl = ttl
        self.max_sessions = max_sessions

    def _drop(self, sid: str) -> None:
        if self._sessions.pop(sid, None) is not None:
            self._gauge.add(-1)

    def expire(self) -> None:
        now = time.monotonic()
        while self._sessions:
            sid, started = next(iter(self._sessions.items()))
            if now - started < self.ttl and len(self._sessions) <= self.max_sessions:
                break
            self._drop(sid)

    def open(self) -> str:
        self.expire()
        sid = secrets.token_urlsafe(16)
        self._sessions[sid] = time.monotonic()
        self._gauge.add(1)
        self.expire()
        return sid

    def close(self, sid: str) -> bool:
        if sid not in self._sessions:
            return False
        self._drop(sid)
        return True

    def __len__(self) -> int:
        return len(self._sessions)
