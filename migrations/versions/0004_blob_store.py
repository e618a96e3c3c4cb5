"""Dataset content, checkpoints and weights move from SQL into the blob store; uploads.

Each blob is written to the store first and its column dropped after, so a migration that
stops halfway loses nothing: run again, it writes the same keys again. Datasets keep their
bytes as they were (layout ``npz``), and their jobs keep splitting them by seed; SQL keeps
their sizes. The keys are this revision's format, written out here, as later code may move on.

An ended job now outlives its dataset (``dataset_id`` is set NULL when it goes), and a
resumable upload has a row of its own until it becomes a dataset.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 02:30:00
"""

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, key columns, the blob column, its key in the store)
MOVED = (
    ("datasets", ("id",), "content", "datasets/{0}/data.npz"),
    ("checkpoints", ("job_id", "step"), "state", "jobs/{0}/checkpoints/{1:012d}.npz"),
    ("weights", ("job_id", "kind"), "data", "jobs/{0}/weights/{1}.npz"),
)


def _store():  # type: ignore[no-untyped-def]
    # Imported here: a database without rows to move needs no store settings.
    from db.blobs.factory import blob_store
    from db.settings import get_settings

    return blob_store(get_settings())


def _rows(table: str, keys: Sequence[str]) -> Iterator[tuple[object, ...]]:
    """The key tuples of ``table``, read before any blob is (one blob in memory at a time)."""
    bind = op.get_bind()
    yield from [tuple(row) for row in bind.execute(sa.text(
        f"SELECT {', '.join(keys)} FROM {table} ORDER BY {', '.join(keys)}"))]


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("multipart_id", sa.String(length=1024), nullable=True),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("tail_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dataset_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('receiving', 'ingesting', 'ready', 'failed')",
                           name=op.f("uploads_status_check")),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"],
                                name=op.f("uploads_dataset_id_fkey"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("uploads_tenant_id_fkey"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("uploads_pkey")),
    )
    op.create_index(op.f("ix_uploads_tenant_id_created_at"), "uploads",
                    ["tenant_id", "created_at"], unique=False)
    op.create_index(op.f("ix_uploads_expires_at"), "uploads", ["expires_at"], unique=False)

    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("layout", sa.String(length=8), nullable=False,
                                   server_default="npz"))
        batch.add_column(sa.Column("target_min", sa.Double(), nullable=True))
        batch.add_column(sa.Column("target_max", sa.Double(), nullable=True))
        batch.add_column(sa.Column("beyond_float32", sa.JSON(), nullable=True))
        batch.create_check_constraint(op.f("datasets_layout_check"), "layout IN ('rows', 'npz')")
    for table in ("checkpoints", "weights"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("size_bytes", sa.BigInteger(), nullable=True))

    store = None
    bind = op.get_bind()
    for table, keys, column, key in MOVED:
        where = " AND ".join(f"{name} = :{name}" for name in keys)
        for values in _rows(table, keys):
            params = dict(zip(keys, values, strict=True))
            data = bind.execute(sa.text(f"SELECT {column} FROM {table} WHERE {where}"),
                                params).scalar_one()
            store = store or _store()
            store.put(key.format(*values), bytes(data))
            bind.execute(sa.text(f"UPDATE {table} SET size_bytes = :size WHERE {where}"),
                         {**params, "size": len(data)})

    with op.batch_alter_table("datasets") as batch:
        batch.alter_column("layout", server_default=None)
        batch.drop_column("content")
    for table, _, column, _ in MOVED[1:]:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("size_bytes", nullable=False)
            batch.drop_column(column)
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("dataset_id", nullable=True)
        batch.drop_constraint("jobs_dataset_id_fkey", type_="foreignkey")
        batch.create_foreign_key("jobs_dataset_id_fkey", "datasets", ["dataset_id"], ["id"],
                                 ondelete="SET NULL")


def downgrade() -> None:
    bind = op.get_bind()
    later = bind.execute(sa.text("SELECT count(*) FROM datasets WHERE layout <> 'npz'"))
    if later.scalar_one():
        raise RuntimeError("datasets stored in the rows layout have no single-blob form to "
                           "go back to; delete them first")
    orphans = bind.execute(sa.text("SELECT count(*) FROM jobs WHERE dataset_id IS NULL"))
    if orphans.scalar_one():
        raise RuntimeError("jobs whose dataset was deleted cannot go back to a required "
                           "dataset; delete them first")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("jobs_dataset_id_fkey", type_="foreignkey")
        batch.create_foreign_key("jobs_dataset_id_fkey", "datasets", ["dataset_id"], ["id"])
        batch.alter_column("dataset_id", nullable=False)
    for table, _, column, _ in MOVED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(column, sa.LargeBinary(), nullable=True))
    store = None
    for table, keys, column, key in MOVED:
        where = " AND ".join(f"{name} = :{name}" for name in keys)
        for values in _rows(table, keys):
            store = store or _store()
            bind.execute(sa.text(f"UPDATE {table} SET {column} = :data WHERE {where}"),
                         {**dict(zip(keys, values, strict=True)),
                          "data": store.get(key.format(*values))})
    for table, _, column, _ in MOVED:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, nullable=False)
            if table != "datasets":
                batch.drop_column("size_bytes")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_constraint(op.f("datasets_layout_check"), type_="check")
        for name in ("beyond_float32", "target_max", "target_min", "layout"):
            batch.drop_column(name)
    op.drop_index(op.f("ix_uploads_expires_at"), table_name="uploads")
    op.drop_index(op.f("ix_uploads_tenant_id_created_at"), table_name="uploads")
    op.drop_table("uploads")
