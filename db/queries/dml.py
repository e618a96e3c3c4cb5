"""Write statements: the backend's own INSERT (for ON CONFLICT), and counting affected rows."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Executable
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.base import Base


def insert_for(session: Session, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """``INSERT INTO model`` in the dialect of the session's database.

    Both dialects offer the same ``on_conflict_do_nothing`` / ``on_conflict_do_update``, which
    make writes idempotent and resolve races without SAVEPOINTs (see ``db.engine``).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"no upsert support for the {dialect} database")


def affected_rows(session: Session, statement: Executable) -> int:
    """Execute an UPDATE or DELETE and return how many rows it matched.

    (Drivers need not count the rows of an INSERT; an insert uses RETURNING to learn that.)
    """
    # Session.execute is typed as returning a plain Result, but for DML it is a CursorResult.
    result = cast(CursorResult[Any], session.execute(statement))
    return result.rowcount
