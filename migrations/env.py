"""The Alembic environment: the models' metadata, and the database URL from the settings.

URL precedence: ``alembic -x url=...``, then ``sqlalchemy.url`` set on the Config (as
``db.migrate.upgrade`` does), then ``SHARDTRAIN_DATABASE_URL`` / the embedded default.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

import db.models  # noqa: F401  (registers every table on Base.metadata)
from db.base import Base, UTCDateTime
from db.engine import make_engine
from db.settings import get_settings

config = context.config
target_metadata = Base.metadata

# Only the alembic command configures logging from alembic.ini; an application that migrates
# on start-up (db.migrate) keeps its own logging setup.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or get_settings().database_url
    )


def render_item(type_: str, obj: Any, autogen_context: AutogenContext
                ) -> str | Literal[False]:
    # Revisions must not import application code that later changes, so the timestamp type is
    # written as the plain SQL type it stores.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline() -> None:
    """Print the SQL (``alembic upgrade head --sql``) instead of running it."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(database_url())
    try:
        with engine.connect() as connection:
            is_sqlite = connection.dialect.name == "sqlite"
            if is_sqlite:
                # SQLite changes a table by copying it to a new one and dropping the old one
                # (batch mode); with foreign keys on, that drop would cascade into child rows.
                # The pragma only takes effect outside a transaction, hence before it begins,
                # and the commit ends the one SQLAlchemy opened for it, so that Alembic's own
                # transaction below is the outermost one and commits the version row.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
                render_as_batch=is_sqlite,
                render_item=render_item,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
