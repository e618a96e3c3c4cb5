"""Schema upgrades from code: ``alembic upgrade head`` for ``shardtrain serve`` and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations

# The revisions ship as the ``migrations`` package, so this works from a checkout and from an
# installed wheel alike; alembic.ini only serves the ``alembic`` command in a checkout.
SCRIPT_LOCATION = Path(migrations.__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    """The Alembic configuration; ``url`` overrides ``SHARDTRAIN_DATABASE_URL``."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["configure_logger"] = False
    if url is not None:
        # Config values go through ConfigParser interpolation, where "%" (as in a URL-encoded
        # password) is special.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None) -> None:
    """Bring the database at ``url`` (default: the settings' URL) to the latest revision."""
    command.upgrade(alembic_config(url), "head")
