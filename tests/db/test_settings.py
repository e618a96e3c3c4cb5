"""Settings: the embedded default, overrides from SHARDTRAIN_*, and production refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from db.settings import Settings, get_settings


def test_with_nothing_set_the_settings_describe_the_embedded_default(
    clean_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_settings.setenv("HOME", str(tmp_path))
    settings = get_settings()
    assert settings.data_dir == tmp_path / ".shardtrain"
    assert settings.database_url == f"sqlite:///{tmp_path / '.shardtrain' / 'shardtrain.sqlite3'}"
    assert settings.broker_url == "memory://localhost/" and settings.is_embedded
    assert settings.redis_url is None and settings.result_backend is None
    assert (settings.host, settings.port, settings.environment) == (
        "127.0.0.1",
        8000,
        "development",
    )
    assert settings.max_body_bytes == 64 * 1024 * 1024
    assert get_settings() is settings


def test_variables_override_and_the_database_follows_the_data_dir(
    clean_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_settings.setenv("HOME", str(tmp_path))
    clean_settings.setenv("SHARDTRAIN_DATA_DIR", "~/elsewhere")
    clean_settings.setenv("SHARDTRAIN_MAX_ROWS", "500")
    clean_settings.setenv("SHARDTRAIN_RANK_TIMEOUT_S", "2.5")
    settings = get_settings()
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.database_url.endswith("/elsewhere/shardtrain.sqlite3")
    assert settings.max_rows == 500 and settings.rank_timeout_s == 2.5


def test_an_explicit_database_url_wins(clean_settings: pytest.MonkeyPatch) -> None:
    clean_settings.setenv("SHARDTRAIN_DATABASE_URL", "postgresql+psycopg://db/shardtrain")
    assert get_settings().database_url == "postgresql+psycopg://db/shardtrain"


DEPLOYED = {
    "database_url": "postgresql+psycopg://db/shardtrain",
    "broker_url": "redis://redis:6379/0",
    "redis_url": "redis://redis:6379/1",
}


def test_production_accepts_a_deployed_setup(clean_settings: pytest.MonkeyPatch) -> None:
    settings = Settings(environment="production", host="0.0.0.0", **DEPLOYED)  # type: ignore[arg-type]
    assert not settings.is_embedded


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("database_url", "sqlite:////var/lib/shardtrain.sqlite3", "SQLite"),
        ("broker_url", "memory://", "memory://"),
        ("redis_url", None, "REDIS_URL"),
    ],
)
def test_production_refuses_in_process_parts(
    clean_settings: pytest.MonkeyPatch, field: str, value: str | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=f"unsafe settings for production.*{message}"):
        Settings(environment="production", **(DEPLOYED | {field: value}))  # type: ignore[arg-type]


def test_limits_must_be_positive(clean_settings: pytest.MonkeyPatch) -> None:
    clean_settings.setenv("SHARDTRAIN_MAX_EPOCHS", "0")
    with pytest.raises(ValidationError, match="max_epochs"):
        get_settings()
