"""Alembic's environment and revisions; a package so that installs ship them (db.migrate)."""
