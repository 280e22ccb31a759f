"""SQL storage for groups and sample events (SQLAlchemy 2 Core; SQLite with WAL, or PostgreSQL).

Counts are upserts (``count = count + excluded.count``) inside one transaction per batch, with
groups locked in sorted order: any number of worker processes sharing one PostgreSQL database
count exactly and never deadlock. New groups and regressions are detected by a per-batch token
written by the upsert itself, so exactly one worker raises each alert signal.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine, make_url

from sizewise_otel.errors.context import ErrorEvent, ErrorSeverity, max_severity
from sizewise_otel.settings import Settings

DEFAULT_SQLITE_FILE = "sizewise-errors.db"
BUCKET_SECONDS = 300  # trend resolution: 5 minutes
STATUSES = ("unresolved", "resolved", "ignored")

metadata = sa.MetaData()

groups = sa.Table(
    "sizewise_error_groups", metadata,
    sa.Column("group_id", sa.String(32), primary_key=True),
    sa.Column("error_type", sa.String(255), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("route", sa.String(512)),
    sa.Column("method", sa.String(16)),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("severity_rank", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="unresolved"),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("users", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("regressions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("resolved_at", sa.Float),
    sa.Column("created_batch", sa.String(32)),
    sa.Column("regressed_batch", sa.String(32)),
    sa.Index("ix_sizewise_error_groups_last_seen", "last_seen", "group_id"),
)

events = sa.Table(
    "sizewise_error_events", metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("group_id", sa.String(32), nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_sizewise_error_events_group", "group_id", "timestamp"),
    sa.Index("ix_sizewise_error_events_ts", "timestamp"),
)

users = sa.Table(
    "sizewise_error_users", metadata,
    sa.Column("group_id", sa.String(32), primary_key=True),
    sa.Column("user_hash", sa.String(32), primary_key=True),
    sa.Column("last_seen", sa.Float, nullable=False),
)

buckets = sa.Table(
    "sizewise_error_buckets", metadata,
    sa.Column("group_id", sa.String(32), primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Index("ix_sizewise_error_buckets_bucket", "bucket"),
)


# --- configuration ------------------------------------------------------------------------------

def resolve_store_url(settings: Settings) -> str:
    """ERROR_STORE_URL; else DATABASE_URL when it is PostgreSQL; else ``sizewise-errors.db`` (cwd).

    The errors never share a SQLite file with the application: SQLite has one writer at a time.
    Async and driverless PostgreSQL URLs are mapped to psycopg 3 (the store is synchronous).
    """
    raw = settings.error_store_url.strip()
    if not raw:
        db = settings.database_url.strip()
        raw = db if db.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres") \
            else f"sqlite:///{DEFAULT_SQLITE_FILE}"
    return normalize_url(raw)


def normalize_url(raw: str) -> str:
    scheme, sep, rest = raw.partition("://")
    base = scheme.split("+", 1)[0]
    if base in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    if base == "sqlite":
        return f"sqlite://{rest}" if sep else raw
    return raw


def create_store_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 5.0},
                                  pool_pre_ping=False)

        @sa_event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            if database != ":memory:":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        @sa_event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlock

        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": 3, "options": "-c statement_timeout=15000"}
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2, pool_recycle=1800,
                            connect_args=connect_args)


# --- results ------------------------------------------------------------------------------------

@dataclass
class GroupSignal:
    kind: str  # "new_group" | "regression"
    group_id: str
    error_type: str
    title: str
    route: str | None
    severity: str
    count: int
    event_id: str = ""  # the group's latest event of the batch (kept: samples keep the latest)
    batch_count: int = 0  # the group's events in this batch


@dataclass
class BatchResult:
    stored: int = 0
    signals: list[GroupSignal] = field(default_factory=list)  # new groups and regressions
    by_severity: dict[str, int] = field(default_factory=dict)
    groups: list[GroupSignal] = field(default_factory=list)  # every group of the batch (spikes)


@dataclass
class _Agg:
    first: ErrorEvent
    count: int = 0
    first_seen: float = float("inf")
    last_seen: float = 0.0
    severity: str = "low"
    samples: list[ErrorEvent] = field(default_factory=list)
    users: set[str] = field(default_factory=set)
    buckets: dict[int, int] = field(default_factory=dict)


def _rank(severity: str) -> int:
    sev = ErrorSeverity.parse(severity, ErrorSeverity.MEDIUM)
    return sev.rank  # type: ignore[union-attr]


class ErrorStore:
    """All SQL the tracker runs. Thread-safe (SQLAlchemy engine); used by the writer and the API."""

    def __init__(self, url: str, samples_per_group: int = 10) -> None:
        self.url = url
        self.engine = create_store_engine(url)
        self.dialect = self.engine.dialect.name
        self.samples_per_group = samples_per_group
        self._insert = _dialect_insert(self.dialect)
        self._statements = self._build_statements()

    def create_schema(self) -> None:
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7263541)"))  # concurrent workers
            metadata.create_all(conn, checkfirst=True)

    def dispose(self) -> None:
        self.engine.dispose()

    # --- writes ---------------------------------------------------------------------------------
    def write_batch(self, batch: Sequence[ErrorEvent]) -> BatchResult:
        aggs: dict[str, _Agg] = {}
        for ev in batch:
            agg = aggs.get(ev.group_id)
            if agg is None:
                agg = aggs[ev.group_id] = _Agg(first=ev, severity=ev.severity)
            agg.count += 1
            agg.first_seen = min(agg.first_seen, ev.timestamp)
            agg.last_seen = max(agg.last_seen, ev.timestamp)
            agg.severity = max_severity(agg.severity, ev.severity)
            agg.samples.append(ev)
            if ev.user_hash:
                agg.users.add(ev.user_hash)
            b = int(ev.timestamp // BUCKET_SECONDS * BUCKET_SECONDS)
            agg.buckets[b] = agg.buckets.get(b, 0) + 1
        token = uuid.uuid4().hex
        result = BatchResult(stored=len(batch))
        for ev in batch:
            result.by_severity[ev.severity] = result.by_severity.get(ev.severity, 0) + 1
        st = self._statements
        order = sorted(aggs)  # one lock order for every worker: no deadlocks
        with self.engine.begin() as conn:
            for gid in order:
                agg = aggs[gid]
                ev = agg.first
                row = conn.execute(st["group"], {
                    "p_group_id": gid, "p_error_type": ev.error_type[:255], "p_title": ev.title,
                    "p_route": ev.route or None, "p_method": ev.method, "p_severity": agg.severity,
                    "p_severity_rank": _rank(agg.severity), "p_first_seen": agg.first_seen,
                    "p_last_seen": agg.last_seen, "p_count": agg.count, "p_token": token}).one()
                kind = ("new_group" if row.created_batch == token else
                        "regression" if row.regressed_batch == token else "seen")
                latest = max(agg.samples[-self.samples_per_group:], key=lambda e: (e.timestamp, e.id))
                sig = GroupSignal(kind, row.group_id, row.error_type, row.title, row.route, row.severity,
                                  row.count, latest.id, agg.count)
                result.groups.append(sig)
                if kind != "seen":
                    result.signals.append(sig)
            bucket_rows = [{"group_id": gid, "bucket": b, "count": n}
                           for gid in order for b, n in sorted(aggs[gid].buckets.items())]
            conn.execute(st["bucket"], bucket_rows)
            for gid in order:
                agg = aggs[gid]
                new_users = 0
                for u in sorted(agg.users):
                    res = conn.execute(st["user"], {"group_id": gid, "user_hash": u,
                                                    "last_seen": agg.last_seen})
                    new_users += max(res.rowcount or 0, 0)
                if new_users:
                    conn.execute(st["users_count"], {"gid": gid, "n": new_users})
            sample_rows = [
                {"event_id": ev.id, "group_id": gid, "timestamp": ev.timestamp,
                 "payload": json.dumps(ev.payload(), default=str)}
                for gid in order for ev in aggs[gid].samples[-self.samples_per_group:]]
            conn.execute(events.insert(), sample_rows)
            for gid in order:
                conn.execute(st["trim"], {"gid": gid, "keep": self.samples_per_group})
        return result

    def _build_statements(self) -> dict[str, Any]:
        """The upserts as portable SQL text (SQLite and PostgreSQL share ``ON CONFLICT`` syntax).

        Text statements are compiled once and cached; SQLAlchemy's dialect ``on_conflict`` constructs
        are recompiled on every execution, which made batches several times slower.
        """
        g = "sizewise_error_groups"
        resolved = f"{g}.status = 'resolved'"
        group_stmt = sa.text(f"""
            INSERT INTO {g} (group_id, error_type, title, route, method, severity, severity_rank, status,
                             first_seen, last_seen, count, users, regressions, created_batch, regressed_batch)
            VALUES (:p_group_id, :p_error_type, :p_title, :p_route, :p_method, :p_severity, :p_severity_rank,
                    'unresolved', :p_first_seen, :p_last_seen, :p_count, 0, 0, :p_token, NULL)
            ON CONFLICT (group_id) DO UPDATE SET
                count = {g}.count + excluded.count,
                last_seen = CASE WHEN excluded.last_seen > {g}.last_seen
                                 THEN excluded.last_seen ELSE {g}.last_seen END,
                first_seen = CASE WHEN excluded.first_seen < {g}.first_seen
                                  THEN excluded.first_seen ELSE {g}.first_seen END,
                severity = CASE WHEN excluded.severity_rank > {g}.severity_rank
                                THEN excluded.severity ELSE {g}.severity END,
                severity_rank = CASE WHEN excluded.severity_rank > {g}.severity_rank
                                     THEN excluded.severity_rank ELSE {g}.severity_rank END,
                status = CASE WHEN {resolved} THEN 'unresolved' ELSE {g}.status END,
                regressions = {g}.regressions + CASE WHEN {resolved} THEN 1 ELSE 0 END,
                regressed_batch = CASE WHEN {resolved} THEN excluded.created_batch
                                       ELSE {g}.regressed_batch END,
                created_batch = NULL
            RETURNING group_id, error_type, title, route, severity, count, created_batch, regressed_batch
        """)
        b = "sizewise_error_buckets"
        bucket_stmt = sa.text(f"""
            INSERT INTO {b} (group_id, bucket, count) VALUES (:group_id, :bucket, :count)
            ON CONFLICT (group_id, bucket) DO UPDATE SET count = {b}.count + excluded.count
        """)
        user_stmt = sa.text("""
            INSERT INTO sizewise_error_users (group_id, user_hash, last_seen)
            VALUES (:group_id, :user_hash, :last_seen)
            ON CONFLICT (group_id, user_hash) DO NOTHING
        """)
        users_count = sa.text(f"UPDATE {g} SET users = users + :n WHERE group_id = :gid")
        keep = (sa.select(events.c.event_id).where(events.c.group_id == sa.bindparam("gid"))
                .order_by(events.c.timestamp.desc(), events.c.event_id.desc())
                .limit(sa.bindparam("keep", type_=sa.Integer)))
        trim = events.delete().where(events.c.group_id == sa.bindparam("gid")).where(
            events.c.event_id.not_in(keep))
        return {"group": group_stmt, "bucket": bucket_stmt, "user": user_stmt, "users_count": users_count,
                "trim": trim}

    def set_status(self, group_id: str, status: str, now: float | None = None) -> dict[str, Any] | None:
        now = now or time.time()
        with self.engine.begin() as conn:
            res = conn.execute(groups.update().where(groups.c.group_id == group_id).values(
                status=status, resolved_at=now if status == "resolved" else None).returning(groups))
            row = res.one_or_none()
        return group_dict(row) if row is not None else None

    def cleanup(self, cutoff: float) -> dict[str, int]:
        """Delete everything last seen before ``cutoff`` (epoch seconds)."""
        with self.engine.begin() as conn:
            stale = sa.select(groups.c.group_id).where(groups.c.last_seen < cutoff)
            deleted = {
                "events": conn.execute(events.delete().where(events.c.timestamp < cutoff)).rowcount,
                "buckets": conn.execute(buckets.delete().where(buckets.c.bucket < cutoff - BUCKET_SECONDS))
                .rowcount,
                "users": conn.execute(users.delete().where(users.c.group_id.in_(stale))).rowcount,
            }
            conn.execute(events.delete().where(events.c.group_id.in_(stale)))
            deleted["groups"] = conn.execute(groups.delete().where(groups.c.last_seen < cutoff)).rowcount
        return {k: max(v or 0, 0) for k, v in deleted.items()}

    # --- reads ----------------------------------------------------------------------------------
    def get_event(self, event_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(events.c.payload).where(events.c.event_id == event_id)).first()
        return json.loads(row.payload) if row else None

    def get_group(self, group_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(groups).where(groups.c.group_id == group_id)).first()
            if row is None:
                return None
            out = group_dict(row)
            samples = conn.execute(
                sa.select(events.c.event_id, events.c.timestamp).where(events.c.group_id == group_id)
                .order_by(events.c.timestamp.desc()).limit(self.samples_per_group)).all()
        out["sample_event_ids"] = [s.event_id for s in samples]
        return out

    def list_groups(self, *, status: str | None = None, severity: str | None = None,
                    since: float | None = None, limit: int = 50,
                    cursor: tuple[float, str] | None = None) -> tuple[list[dict[str, Any]], str | None]:
        q = sa.select(groups)
        if status:
            q = q.where(groups.c.status == status)
        if severity:
            q = q.where(groups.c.severity == severity)
        if since is not None:
            q = q.where(groups.c.last_seen >= since)
        if cursor is not None:
            last, gid = cursor
            q = q.where(sa.or_(groups.c.last_seen < last,
                               sa.and_(groups.c.last_seen == last, groups.c.group_id > gid)))
        q = q.order_by(groups.c.last_seen.desc(), groups.c.group_id).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].last_seen, rows[-1].group_id) if more and rows else None
        return [group_dict(r) for r in rows], next_cursor

    def summary(self, now: float, window_seconds: float, top: int = 10) -> dict[str, Any]:
        start = now - window_seconds
        first_bucket = int(start // BUCKET_SECONDS * BUCKET_SECONDS)
        with self.engine.connect() as conn:
            in_window = (sa.select(buckets.c.group_id, sa.func.sum(buckets.c.count).label("n"))
                         .where(buckets.c.bucket >= first_bucket).group_by(buckets.c.group_id).subquery())
            per_group = conn.execute(
                sa.select(groups.c.group_id, groups.c.error_type, groups.c.severity, groups.c.status,
                          groups.c.title, groups.c.route, groups.c.count, groups.c.last_seen, in_window.c.n)
                .join(in_window, in_window.c.group_id == groups.c.group_id)).all()
            trend_rows = conn.execute(
                sa.select(buckets.c.bucket, sa.func.sum(buckets.c.count))
                .where(buckets.c.bucket >= first_bucket).group_by(buckets.c.bucket)
                .order_by(buckets.c.bucket)).all()
            last_hour = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(buckets.c.count), 0))
                .where(buckets.c.bucket >= int((now - 3600) // BUCKET_SECONDS * BUCKET_SECONDS))).scalar()
            totals = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(groups.c.count), 0))
                                  .select_from(groups)).one()
            by_status = dict(conn.execute(sa.select(groups.c.status, sa.func.count())
                                          .group_by(groups.c.status)).all())
        by_severity: dict[str, int] = {str(s): 0 for s in ErrorSeverity}
        by_type: dict[str, int] = {}
        for r in per_group:
            by_severity[r.severity] = by_severity.get(r.severity, 0) + int(r.n)
            by_type[r.error_type] = by_type.get(r.error_type, 0) + int(r.n)
        top_groups = sorted(per_group, key=lambda r: (-int(r.n), r.group_id))[:top]
        trend_map = {int(b): int(n) for b, n in trend_rows}
        trend = [{"start": _iso(b), "count": trend_map.get(b, 0)}
                 for b in range(first_bucket, int(now) + 1, BUCKET_SECONDS)]
        return {
            "window_hours": round(window_seconds / 3600, 3),
            "total_events": sum(int(r.n) for r in per_group),
            "total_events_all_time": int(totals[1]),
            "total_groups": int(totals[0]),
            "groups_by_status": {s: int(by_status.get(s, 0)) for s in STATUSES},
            "rate_per_minute": round(float(last_hour or 0) / 60.0, 3),
            "by_severity": by_severity,
            "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])[:50]),
            "top_groups": [{"group_id": r.group_id, "type": r.error_type, "title": r.title,
                            "route": r.route, "severity": r.severity, "status": r.status,
                            "count_in_window": int(r.n), "count": int(r.count),
                            "last_seen": _iso(r.last_seen)} for r in top_groups],
            "trend": {"bucket_seconds": BUCKET_SECONDS, "points": trend},
        }

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))


def _dialect_insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - documented: SQLite and PostgreSQL only
        raise ValueError(f"error store: unsupported database {dialect!r} (use SQLite or PostgreSQL)")
    return insert


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def group_dict(row: Any) -> dict[str, Any]:
    return {
        "group_id": row.group_id, "type": row.error_type, "title": row.title, "route": row.route,
        "method": row.method, "severity": row.severity, "status": row.status,
        "first_seen": _iso(row.first_seen), "last_seen": _iso(row.last_seen), "count": int(row.count),
        "users": int(row.users), "regressions": int(row.regressions),
        "resolved_at": _iso(row.resolved_at) if row.resolved_at else None,
    }


def encode_cursor(last_seen: float, group_id: str) -> str:
    return base64.urlsafe_b64encode(f"{last_seen!r}|{group_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raise ValueError on anything but a cursor this module made."""
    padded = cursor + "=" * (-len(cursor) % 4)
    raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    last, _, gid = raw.partition("|")
    value = float(last)
    if len(gid) != 32 or any(c not in "0123456789abcdef" for c in gid) or value != value:
        raise ValueError("bad cursor")
    return value, gid


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
