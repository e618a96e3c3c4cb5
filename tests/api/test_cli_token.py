"""``shardtrain token``: tokens for tenants, straight in the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from db.engine import (
    get_engine,
    get_session_factory,
    make_engine,
    make_session_factory,
    session_scope,
)
from db.migrate import upgrade
from db.queries.tenants import tenant_for_token
from db.settings import get_settings

runner = CliRunner()


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database that does not exist yet, as the process's settings, engine and sessions."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("SHARDTRAIN_DATABASE_URL", url)
    monkeypatch.setenv("SHARDTRAIN_DATA_DIR", str(tmp_path))
    caches = (get_settings, get_engine, get_session_factory)
    for cache in caches:
        cache.cache_clear()
    yield url
    get_engine().dispose()
    for cache in caches:
        cache.cache_clear()


def test_token_create_migrates_creates_the_tenant_and_prints_a_token(database_url: str) -> None:
    result = runner.invoke(app, ["token", "create", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    second = runner.invoke(app, ["token", "create", "--tenant", "acme"]).stdout.strip()
    assert token != second
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            tenants = [tenant_for_token(session, token=t) for t in (token, second)]
            assert [tenant.name if tenant else None for tenant in tenants] == ["acme", "acme"]
    finally:
        engine.dispose()


def test_token_revoke(database_url: str) -> None:
    upgrade(database_url)
    token = runner.invoke(app, ["token", "create", "--tenant", "acme"]).stdout.strip()
    assert runner.invoke(app, ["token", "revoke", token]).exit_code == 0
    again = runner.invoke(app, ["token", "revoke", token])
    assert again.exit_code == 1 and "unknown or already revoked" in again.output


def test_a_tenant_name_is_not_blank(database_url: str) -> None:
    for name in ("", "  ", " acme"):
        result = runner.invoke(app, ["token", "create", "--tenant", name])
        assert result.exit_code == 2 and "a tenant name is not empty" in result.stderr
        assert result.stdout == ""
