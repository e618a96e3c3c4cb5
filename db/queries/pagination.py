"""Keyset pagination with opaque cursors, for listings sorted by one column then by id.

A cursor is base64 JSON of ``[sort name, sort value of the last row, id of the last row]``: the
next page starts strictly after that row, so rows inserted meanwhile never shift a page the way
OFFSET would. Ties on the sort value are broken by id in the same direction.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")


class InvalidCursor(ValueError):
    """A cursor that this server did not issue, or issued for another sort order."""


def cursor_datetime(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as error:
        raise InvalidCursor(f"cursor holds no timestamp: {value!r}") from error
    if parsed.tzinfo is None:
        raise InvalidCursor(f"cursor timestamp has no offset: {value!r}")
    return parsed


def cursor_number(value: Any) -> float | None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise InvalidCursor(f"cursor holds no number: {value!r}")


@dataclass(frozen=True)
class SortKey:
    """One sort order of a listing; ``name`` is how clients spell it, e.g. ``-created``."""

    name: str
    column: InstrumentedAttribute[Any]
    descending: bool
    parse: Callable[[Any], Any]
    """Turns the JSON sort value of a cursor back into a column value."""
    nullable: bool = False
    """Whether the column holds NULLs, which sort last in both directions."""


def paginate(
    session: Session,
    statement: Select[T],
    *,
    key: SortKey,
    id_column: InstrumentedAttribute[str],
    limit: int,
    cursor: str | None,
) -> tuple[list[T], str | None]:
    """One page of ``statement``'s rows in ``key`` order, and the cursor of the next page."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if cursor is not None:
        value, last_id = _decode(cursor, key.name)
        statement = statement.where(_after(key, id_column, key.parse(value), last_id))
    column, row_id = (
        (key.column.desc(), id_column.desc())
        if key.descending
        else (key.column.asc(), id_column.asc())
    )
    # NULLS LAST only where NULLs occur: on a NOT NULL column it would keep PostgreSQL from
    # reading the (ascending, nulls last) index backwards for a descending order.
    statement = statement.order_by(column.nulls_last() if key.nullable else column, row_id)
    rows = list(session.execute(statement.limit(limit + 1)).scalars())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    value = getattr(last, key.column.key)
    if isinstance(value, datetime):
        value = value.isoformat()
    return rows[:limit], _encode(key.name, value, getattr(last, id_column.key))


def _after(
    key: SortKey, id_column: InstrumentedAttribute[str], value: Any, last_id: str
) -> ColumnElement[bool]:
    """Rows that come after ``(value, last_id)`` in ``key`` order."""
    column = key.column
    if value is None:
        # Inside the trailing NULL block only the id orders the rows.
        later_id = id_column < last_id if key.descending else id_column > last_id
        return and_(column.is_(None), later_id)
    if key.descending:
        later = or_(column < value, and_(column == value, id_column < last_id))
    else:
        later = or_(column > value, and_(column == value, id_column > last_id))
    return or_(later, column.is_(None)) if key.nullable else later


def _encode(name: str, value: Any, row_id: str) -> str:
    payload = json.dumps([name, value, row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode(cursor: str, name: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        cursor_name, value, row_id = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as error:
        raise InvalidCursor(f"malformed cursor {cursor!r}") from error
    if cursor_name != name or not isinstance(row_id, str):
        raise InvalidCursor(f"cursor {cursor!r} was not issued for order {name!r}")
    return value, row_id
