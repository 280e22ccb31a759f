"""The SQL store on a real SQLite file: upserts, samples cap, users, regressions, retention, cursors."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from sizewise_otel.errors.context import ErrorEvent
from sizewise_otel.errors.store import (
    ErrorStore,
    decode_cursor,
    encode_cursor,
    normalize_url,
    resolve_store_url,
)
from sizewise_otel.settings import load_settings


def make_event(group: str, *, ts: float | None = None, user: str | None = None,
               severity: str = "medium") -> ErrorEvent:
    return ErrorEvent(id=str(uuid.uuid4()), group_id=group, timestamp=ts or time.time(),
                      error_type="ValueError", message="m", title="ValueError: m", stacktrace="",
                      frames=[], route="/r/{id}", method="GET", severity=severity, context={},
                      user_hash=user)


G1, G2 = "a" * 32, "b" * 32


@pytest.fixture
def store(tmp_path: Path) -> ErrorStore:
    s = ErrorStore(f"sqlite:///{tmp_path / 'errors.db'}", samples_per_group=5)
    s.create_schema()
    yield s
    s.dispose()


def test_counts_add_up_across_batches(store: ErrorStore) -> None:
    r1 = store.write_batch([make_event(G1) for _ in range(7)] + [make_event(G2)])
    r2 = store.write_batch([make_event(G1) for _ in range(3)])
    assert {s.kind for s in r1.signals} == {"new_group"} and len(r1.signals) == 2
    assert r2.signals == []
    assert store.get_group(G1)["count"] == 10
    assert store.get_group(G2)["count"] == 1


def test_samples_capped_and_newest_kept(store: ErrorStore) -> None:
    evs = [make_event(G1, ts=1_000_000 + i) for i in range(12)]
    store.write_batch(evs[:6])
    store.write_batch(evs[6:])
    group = store.get_group(G1)
    assert len(group["sample_event_ids"]) == 5
    assert store.get_event(evs[-1].id)["id"] == evs[-1].id
    assert store.get_event(evs[0].id) is None


def test_distinct_users_and_severity_is_the_max(store: ErrorStore) -> None:
    store.write_batch([make_event(G1, user="u1"), make_event(G1, user="u2", severity="critical")])
    store.write_batch([make_event(G1, user="u1", severity="low"), make_event(G1, user="u3")])
    g = store.get_group(G1)
    assert g["users"] == 3 and g["severity"] == "critical"


def test_resolved_group_that_recurs_is_a_regression(store: ErrorStore) -> None:
    store.write_batch([make_event(G1)])
    assert store.set_status(G1, "resolved")["status"] == "resolved"
    r = store.write_batch([make_event(G1)])
    assert [s.kind for s in r.signals] == ["regression"]
    g = store.get_group(G1)
    assert g["status"] == "unresolved" and g["regressions"] == 1
    store.set_status(G1, "ignored")
    assert store.write_batch([make_event(G1)]).signals == []
    assert store.get_group(G1)["status"] == "ignored"
    assert store.set_status("c" * 32, "resolved") is None


def test_retention_cleanup(store: ErrorStore) -> None:
    old = time.time() - 10 * 86400
    store.write_batch([make_event(G1, ts=old, user="u")])
    store.write_batch([make_event(G2)])
    deleted = store.cleanup(time.time() - 86400)
    assert deleted["groups"] == 1 and deleted["events"] == 1
    assert store.get_group(G1) is None and store.get_group(G2) is not None


def test_list_groups_filters_and_cursor(store: ErrorStore) -> None:
    gids = [f"{i:032x}" for i in range(7)]
    for i, gid in enumerate(gids):
        store.write_batch([make_event(gid, ts=1_700_000_000 + i, severity="high" if i % 2 else "low")])
    seen, cursor = [], None
    while True:
        page, cursor = store.list_groups(limit=3, cursor=decode_cursor(cursor) if cursor else None)
        seen += [g["group_id"] for g in page]
        if not cursor:
            break
    assert seen == list(reversed(gids))
    high, _ = store.list_groups(severity="high")
    assert len(high) == 3
    recent, _ = store.list_groups(since=1_700_000_005)
    assert len(recent) == 2


def test_summary(store: ErrorStore) -> None:
    now = time.time()
    store.write_batch([make_event(G1, severity="high") for _ in range(4)] + [make_event(G2)])
    s = store.summary(now + 1, 3600)
    assert s["total_events"] == 5 and s["total_groups"] == 2
    assert s["by_severity"]["high"] == 4 and s["by_type"] == {"ValueError": 5}
    assert s["top_groups"][0]["group_id"] == G1
    assert sum(p["count"] for p in s["trend"]["points"]) == 5


def test_cursor_rejects_garbage() -> None:
    assert decode_cursor(encode_cursor(12.5, G1)) == (12.5, G1)
    for bad in ("x", "!!!", encode_cursor(1.0, "zz")):
        with pytest.raises(ValueError):
            decode_cursor(bad)


def test_store_url_resolution() -> None:
    assert resolve_store_url(load_settings(error_store_url="", database_url="sqlite:///app.db")) \
        == "sqlite:///sizewise-errors.db"
    assert resolve_store_url(load_settings(error_store_url="", database_url="postgresql://u@h/db")) \
        == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+asyncpg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite+aiosqlite:///x.db") == "sqlite:///x.db"


def test_reopen_keeps_groups(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    s1 = ErrorStore(url)
    s1.create_schema()
    s1.write_batch([make_event(G1) for _ in range(3)])
    s1.dispose()
    s2 = ErrorStore(url)
    s2.create_schema()
    assert s2.get_group(G1)["count"] == 3
    s2.dispose()
