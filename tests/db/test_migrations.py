"""The migrations create the schema the models describe, on both backends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from db.base import Base
from db.engine import make_engine
from db.migrate import alembic_config, upgrade

TABLES = {"tenants", "api_tokens", "datasets", "jobs", "metrics", "checkpoints", "weights",
          "uploads"}


def assert_at_head_and_matching_models(url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert context.get_current_revision() == head
            assert set(inspect(connection).get_table_names()) >= TABLES
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_creates_the_schema_of_the_models(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    assert_at_head_and_matching_models(empty_database_url)


def test_downgrade_to_base_and_upgrade_again(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    command.downgrade(alembic_config(empty_database_url), "base")
    engine = make_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(empty_database_url)
    assert_at_head_and_matching_models(empty_database_url)


@pytest.mark.services
def test_weights_and_checkpoints_are_stored_uncompressed_on_postgresql(
    new_postgres_database: Callable[[], str],
) -> None:
    url = new_postgres_database()
    command.upgrade(alembic_config(url), "0003")  # 0004 moved these columns to the blob store
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            storage: dict[str, str] = dict(connection.execute(text(
                "SELECT attrelid::regclass::text || '.' || attname, attstorage FROM pg_attribute"
                " WHERE attrelid IN ('weights'::regclass, 'checkpoints'::regclass,"
                " 'datasets'::regclass) AND attname IN ('data', 'state', 'content')")).all())
    finally:
        engine.dispose()
    # 'e' is EXTERNAL (out of line, never compressed); datasets keep the default, 'x'.
    assert storage == {"weights.data": "e", "checkpoints.state": "e", "datasets.content": "x"}


def test_upgrade_twice_is_a_no_op(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    upgrade(sqlite_url)
    assert_at_head_and_matching_models(sqlite_url)


def test_upgrade_without_url_uses_the_settings(
    sqlite_url: str, clean_settings: pytest.MonkeyPatch
) -> None:
    clean_settings.setenv("SHARDTRAIN_DATABASE_URL", sqlite_url)
    upgrade()
    assert_at_head_and_matching_models(sqlite_url)


ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def test_alembic_command_line_takes_the_url_from_x_argument(sqlite_url: str) -> None:
    # From another directory, to show that alembic.ini finds migrations/ by its own location.
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "-x", f"url={sqlite_url}",
         "upgrade", "head"],
        cwd="/",
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert_at_head_and_matching_models(sqlite_url)


def test_every_revision_is_on_one_line_of_history() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1
    assert [r.revision for r in scripts.walk_revisions()][-1] == "0001"
