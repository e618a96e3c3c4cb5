"""Engines and sessions for SQLite (embedded) and PostgreSQL (deployed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db.settings import get_settings

SessionFactory = sessionmaker[Session]

# Seconds a SQLite writer waits for another thread's write lock before giving up; the API and
# the in-process workers write to the same file in embedded mode.
SQLITE_BUSY_TIMEOUT_S = 30.0


def make_engine(url: str, *, idle_in_transaction_s: float | None = None, pool_size: int = 5,
                max_overflow: int = 10, pool_timeout_s: float = 30.0) -> Engine:
    """An engine for ``url``; for a SQLite file, its directory is created if missing.

    ``idle_in_transaction_s`` (PostgreSQL): the server ends a session that waits longer than
    this inside a transaction, releasing its locks, so that a process stopped mid-transaction
    (a hung leader) cannot hold a job's row against the watchdog and the next leader.
    ``pool_size`` connections stay open, ``max_overflow`` more open under load, and a checkout
    waits at most ``pool_timeout_s`` for one (``sqlalchemy.exc.TimeoutError``)."""
    parsed = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout_s}
    if parsed.get_backend_name() != "sqlite":
        connect_args = {}
        if idle_in_transaction_s is not None:
            milliseconds = max(1, round(idle_in_transaction_s * 1000))
            connect_args["options"] = f"-c idle_in_transaction_session_timeout={milliseconds}"
        # A pooled connection may have been closed by the server or a proxy since its last use.
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)

    in_memory = parsed.database in (None, "", ":memory:")
    if parsed.database and not in_memory:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # Threads share the pool (API handlers, in-process workers), hence check_same_thread=False.
    # pysqlite's own transaction handling is kept on purpose: it begins a transaction only
    # before the first write, so reads take no snapshot and a read-then-write transaction cannot
    # fail with SQLITE_BUSY_SNAPSHOT when another thread wrote in between. Its SAVEPOINTs are
    # unreliable in that mode, which is why the queries resolve races with ON CONFLICT instead.
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        **({} if in_memory else pool),
    )
    event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers (API polls) proceed while a worker writes; SQLite leaves foreign keys,
        # and so ON DELETE CASCADE, off unless asked on every connection.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


@lru_cache
def get_engine() -> Engine:
    """The engine of this process, for ``get_settings().database_url``. A session silent
    inside a transaction for ``stall_timeout_s`` belongs to a leader presumed dead anyway."""
    settings = get_settings()
    return make_engine(settings.database_url, idle_in_transaction_s=settings.stall_timeout_s,
                       pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)


def make_session_factory(engine: Engine) -> SessionFactory:
    # Objects stay readable after commit: a route commits, then serialises what it created.
    return sessionmaker(bind=engine, expire_on_commit=False)


@lru_cache
def get_session_factory() -> SessionFactory:
    return make_session_factory(get_engine())


@contextmanager
def session_scope(factory: SessionFactory | None = None) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises.

    The block may also commit early (e.g. before enqueueing a task that reads what it wrote).
    """
    # Closing a session rolls back whatever it has not committed.
    with (factory or get_session_factory())() as session:
        yield session
        session.commit()


def get_session() -> Iterator[Session]:
    """FastAPI dependency: one ``session_scope`` per request."""
    with session_scope() as session:
        yield session
