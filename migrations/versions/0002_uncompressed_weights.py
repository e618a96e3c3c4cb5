"""Weights and checkpoints stored without TOAST compression on PostgreSQL.

Their bytes are float arrays, which pglz barely shrinks but spends most of a write on: storing
a 400 KB weights file took 7.9 ms compressed and 2.0 ms with STORAGE EXTERNAL (out of line,
uncompressed), and a job writes several of them on its way to the end. SQLite has no such
setting, and the models do not describe it (autogenerate does not compare storage).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 23:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("weights", "data"), ("checkpoints", "state"))


def _set_storage(storage: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE {storage}")


def upgrade() -> None:
    _set_storage("EXTERNAL")


def downgrade() -> None:
    _set_storage("EXTENDED")
