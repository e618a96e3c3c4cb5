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
    assert (settings.max_rows, settings.max_dataset_bytes) == (100_000_000, 50 * 1024**3)
    assert settings.tenant_quota_bytes is None and settings.ingest_tmp_dir is None
    assert get_settings() is settings


def test_variables_override_and_the_database_follows_the_data_dir(
    clean_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_settings.setenv("HOME", str(tmp_path))
    clean_settings.setenv("SHARDTRAIN_DATA_DIR", "~/elsewhere")
    clean_settings.setenv("SHARDTRAIN_MAX_ROWS", "500")
    clean_settings.setenv("SHARDTRAIN_RANK_TIMEOUT_S", "2.5")
    clean_settings.setenv("SHARDTRAIN_TENANT_QUOTA_BYTES", "")  # empty: unset
    clean_settings.setenv("SHARDTRAIN_INGEST_TMP_DIR", "~/spool")
    settings = get_settings()
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.database_url.endswith("/elsewhere/shardtrain.sqlite3")
    assert settings.blob_dir == tmp_path / "elsewhere" / "blobs"
    assert settings.max_rows == 500 and settings.rank_timeout_s == 2.5
    assert settings.tenant_quota_bytes is None and settings.ingest_tmp_dir == tmp_path / "spool"


def test_an_explicit_database_url_wins(clean_settings: pytest.MonkeyPatch) -> None:
    clean_settings.setenv("SHARDTRAIN_DATABASE_URL", "postgresql+psycopg://db/shardtrain")
    assert get_settings().database_url == "postgresql+psycopg://db/shardtrain"


DEPLOYED = {
    "database_url": "postgresql+psycopg://db/shardtrain",
    "broker_url": "redis://redis:6379/0",
    "redis_url": "redis://redis:6379/1",
    "blob_store": "s3",
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
        ("blob_store", "local", "SHARDTRAIN_BLOB_STORE is local"),
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


def test_the_blob_store_is_a_local_directory_unless_s3_is_set(
    clean_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_settings.setenv("HOME", str(tmp_path))
    settings = get_settings()
    assert (settings.blob_store, settings.blob_dir) == ("local", tmp_path / ".shardtrain" / "blobs")
    assert (settings.s3_endpoint_url, settings.s3_bucket, settings.s3_prefix) == (
        None,
        "shardtrain",
        "",
    )
    assert settings.s3_region == "us-east-1" and settings.s3_part_bytes == 8 * 1024 * 1024
    assert settings.s3_access_key_id is None and settings.s3_secret_access_key is None


def test_s3_settings_from_the_environment(clean_settings: pytest.MonkeyPatch) -> None:
    for name, value in {
        "BLOB_STORE": "s3",
        "S3_ENDPOINT_URL": "http://seaweedfs:8333",
        "S3_ACCESS_KEY_ID": "key",
        "S3_SECRET_ACCESS_KEY": "hunter2",
        "S3_PART_BYTES": str(16 * 1024 * 1024),
    }.items():
        clean_settings.setenv(f"SHARDTRAIN_{name}", value)
    settings = get_settings()
    assert settings.blob_store == "s3" and settings.s3_endpoint_url == "http://seaweedfs:8333"
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert settings.s3_part_bytes == 16 * 1024 * 1024


def test_empty_s3_variables_mean_unset(clean_settings: pytest.MonkeyPatch) -> None:
    for name in ("S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"):
        clean_settings.setenv(f"SHARDTRAIN_{name}", "")
    settings = get_settings()
    assert settings.s3_endpoint_url is None and settings.s3_access_key_id is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"s3_access_key_id": "key"}, "set both SHARDTRAIN_S3_ACCESS_KEY_ID"),
        ({"s3_secret_access_key": "secret"}, "set both SHARDTRAIN_S3_ACCESS_KEY_ID"),
        ({"s3_part_bytes": 4 * 1024 * 1024}, "s3_part_bytes"),
        ({"blob_store": "gcs"}, "blob_store"),
    ],
)
def test_s3_refusals(
    clean_settings: pytest.MonkeyPatch, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**fields)  # type: ignore[arg-type]
