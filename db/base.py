"""The declarative base: constraint naming, timestamp and float types shared by every model."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from uuid import uuid4

from sqlalchemy import DateTime, Dialect, Double, MetaData
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so that migrations can refer to (and drop) every constraint by
# name on every backend instead of relying on names a database happened to generate.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


MAX_INTEGER = 2**63 - 1
"""The largest integer a column stores (SQLite's, and PostgreSQL's bigint): a larger step or
count in a query is refused, not passed to the driver, which cannot bind it."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A random primary key: 32 lowercase hex digits."""
    return uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back as an aware ``datetime``.

    PostgreSQL keeps the offset itself (``timestamptz``), but SQLite stores text without one and
    returns naive values; converting on the way in and out makes both backends agree.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware one (e.g. utc_now())")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Python floats are doubles; the precision of a plain Float is up to each backend.
    type_annotation_map = {datetime: UTCDateTime(), float: Double()}


def finite_or_none(value: float | None) -> float | None:
    """``value``, or None if it is NaN or infinite.

    A diverged loss carries no usable number, and the backends disagree on non-finite floats
    (SQLite stores NaN as NULL, PostgreSQL sorts it above every number), so none is stored.
    """
    return value if value is not None and math.isfinite(value) else None
