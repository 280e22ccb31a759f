"""The demo's persistence: projects and their calculations, through SQLAlchemy 2 Core."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

projects = sa.Table(
    "sw_projects", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

calculations = sa.Table(
    "sw_calculations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("sw_projects.id"), nullable=True, index=True),
    sa.Column("calculation_type", sa.String(40), nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def normalize_url(url: str) -> str:
    """Accept the common ``postgresql://`` / ``postgres://`` forms and use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_engine(url: str) -> Engine:
    url = normalize_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 5}
    else:
        kwargs.update(pool_size=10, max_overflow=5, pool_timeout=2,
                      connect_args={"connect_timeout": 2})
    engine = sa.create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")
    return engine


_SCHEMA_LOCK_ID = 0x5157_0001  # any constant: serialises schema creation across workers


def create_schema(engine: Engine) -> None:
    """Create the tables once, even when several workers start together on an empty database."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})
        metadata.create_all(conn, checkfirst=True)


def now() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_project(self, name: str) -> dict[str, Any]:
        created = now()
        with self.engine.begin() as conn:
            pid = conn.execute(projects.insert().values(name=name, created_at=created)).inserted_primary_key[0]
        return {"id": pid, "name": name, "created_at": created.isoformat()}

    def get_project(self, project_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(projects).where(projects.c.id == project_id)).first()
            if row is None:
                return None
            count = conn.execute(sa.select(sa.func.count()).select_from(calculations)
                                 .where(calculations.c.project_id == project_id)).scalar_one()
        return {"id": row.id, "name": row.name, "created_at": row.created_at.isoformat()
                if hasattr(row.created_at, "isoformat") else str(row.created_at), "calculations": count}

    def project_report(self, project_id: int) -> dict[str, Any] | None:
        """A heavier query: per-type counts over the project's calculations (the demo's slow call)."""
        with self.engine.connect() as conn:
            exists = conn.execute(sa.select(projects.c.id).where(projects.c.id == project_id)).first()
            if exists is None:
                return None
            rows = conn.execute(
                sa.select(calculations.c.calculation_type, sa.func.count())
                .where(calculations.c.project_id == project_id)
                .group_by(calculations.c.calculation_type)
            ).all()
        return {"project_id": project_id, "by_type": {t: n for t, n in rows}}

    def save_calculation(self, project_id: int | None, calculation_type: str, inputs: dict[str, Any],
                         result: dict[str, Any]) -> int:
        with self.engine.begin() as conn:
            return conn.execute(calculations.insert().values(
                project_id=project_id, calculation_type=calculation_type,
                inputs=json.dumps(inputs, sort_keys=True), result=json.dumps(result, sort_keys=True),
                created_at=now(),
            )).inserted_primary_key[0]

    def get_calculation(self, calc_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(calculations).where(calculations.c.id == calc_id)).first()
        if row is None:
            return None
        return {"id": row.id, "project_id": row.project_id, "calculation_type": row.calculation_type,
                "inputs": json.loads(row.inputs), "result": json.loads(row.result)}
