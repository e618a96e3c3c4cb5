"""The one configuration object that the API, the workers and the migrations share.

Every field reads ``SHARDTRAIN_<NAME>`` from the environment. With nothing set, the settings
describe the embedded default: a SQLite file under ``~/.shardtrain``, the in-process broker,
jobs on one rank, and a server bound to the loopback interface.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
GiB = 1024 * MiB


def _default_database_url(data: dict[str, Any]) -> str:
    return f"sqlite:///{data['data_dir'] / 'shardtrain.sqlite3'}"


def _default_blob_dir(data: dict[str, Any]) -> Path:
    return Path(data["data_dir"]) / "blobs"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHARDTRAIN_", extra="ignore", use_attribute_docstrings=True
    )

    data_dir: Path = Field(default=Path("~/.shardtrain"), validate_default=True)
    # Declared after data_dir: the factory receives the already validated data_dir.
    database_url: str = Field(default_factory=_default_database_url)
    # A host named explicitly: kombu warns about a memory:// URL without one.
    broker_url: str = "memory://localhost/"
    result_backend: str | None = None
    redis_url: str | None = None
    """Where a job's ranks join their leader; None: every job runs on one rank."""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    environment: Literal["development", "production"] = "development"
    log_json: bool = False
    """Log one JSON object per line (for log collectors) instead of key=value text."""

    max_body_bytes: int = Field(default=64 * MiB, gt=0)
    max_rows: int = Field(default=100_000_000, gt=0)
    max_features: int = Field(default=10_000, gt=0)
    max_params: int = Field(default=10_000_000, gt=0)
    max_epochs: int = Field(default=10_000, gt=0)
    max_compute: int = Field(default=1_000_000_000, gt=0)
    """Budget of one job in row-epochs: training rows times epochs."""
    max_queued_jobs_per_tenant: int = Field(default=100, gt=0)
    max_dataset_bytes: int = Field(default=50 * GiB, gt=0)
    """An upload's bytes, and its X as decoded (a compressed .npz, or a CSV of short numbers,
    decodes to more): past it, an upload is refused (413, or 422 once it is being read)."""
    tenant_quota_bytes: int | None = Field(default=None, gt=0)
    """What one tenant may hold in the blob store: its datasets, the uploads it is sending,
    and its jobs' checkpoints and weights; None: no quota."""
    ingest_tmp_dir: Path | None = None
    """Where an ingest spools an upload's rows while it shuffles them (as much disk as the
    dataset, freed as it ends); None: the system's temporary directory."""

    db_pool_size: int = Field(default=5, gt=0)
    """Database connections each process keeps open."""
    db_max_overflow: int = Field(default=10, ge=0)
    """Connections a process may open past ``db_pool_size`` under load."""
    db_queue_s: float = Field(default=2.0, ge=0)
    """How long an API request waits for a database connection before it is answered 503
    (``api.admission``)."""

    checkpoint_interval_s: float = Field(default=30.0, gt=0)
    metrics_flush_steps: int = Field(default=1000, gt=0)
    metrics_flush_s: float = Field(default=1.0, gt=0)
    visibility_timeout_s: int = Field(default=3600, gt=0)
    broker_restore_interval_s: int = Field(default=10, gt=0)
    """How often a worker hands back to the queue the messages of workers that died (those
    unacknowledged for ``visibility_timeout_s``)."""
    stall_timeout_s: float = Field(default=600.0, gt=0)
    """A running job whose leader has written nothing for this long is presumed lost: another
    delivery may take it over, and the watchdog re-enqueues it. Keep it above the longest step
    (and data loading) of any job."""
    watchdog_interval_s: float = Field(default=30.0, gt=0)
    """How often each worker looks for stalled jobs (``stall_timeout_s``)."""
    max_attempts: int = Field(default=5, gt=0)
    """Attempts after which a stalled job is failed (``stalled``) rather than re-enqueued."""
    row_cache_bytes: int = Field(default=512 * MiB, ge=0)
    """Rows a worker process keeps between jobs (``worker.row_cache``)."""
    rank_join_s: float = Field(default=0.25, ge=0)
    """How long a leader waits for its ranks to join before training with those that did."""
    rank_timeout_s: float = Field(default=30.0, gt=0)
    """Silence after which a rank is dropped (or a rank gives up on its leader)."""
    shared_memory_dir: Path | None = Path("/dev/shm")
    """A tmpfs where a leader offers the ranks on its host shared memory for the bytes of
    every step; empty: over TCP only, as with ranks on other hosts."""

    blob_store: Literal["local", "s3"] = "local"
    """Where dataset content, checkpoints and weights go: a directory or an S3 bucket."""
    blob_dir: Path = Field(default_factory=_default_blob_dir)
    """The directory of the ``local`` blob store (default: ``blobs`` in ``data_dir``)."""
    s3_endpoint_url: str | None = None
    """The S3 server, e.g. ``http://seaweedfs:8333``; unset: AWS S3 itself."""
    s3_bucket: str = "shardtrain"
    """The bucket of the ``s3`` blob store, created on first use if missing."""
    s3_prefix: str = ""
    """Put before every key, so that deployments can share a bucket."""
    s3_region: str = "us-east-1"
    """The region of the bucket (S3-compatible servers take any)."""
    s3_access_key_id: str | None = None
    """With ``s3_secret_access_key``; both unset: boto3's default chain (environment,
    config files, instance role)."""
    s3_secret_access_key: SecretStr | None = None
    """The secret of ``s3_access_key_id``."""
    s3_part_bytes: int = Field(default=8 * MiB, ge=5 * MiB)
    """What one S3 blob writer buffers and sends as a part (S3's minimum part is 5 MiB; 10,000
    parts make its largest blob: 78 GiB at 8 MiB)."""

    upload_expiry_s: float = Field(default=86_400.0, gt=0)
    """A resumable upload untouched for this long is deleted, with the bytes it received;
    a finished one keeps its status (``GET /v1/uploads/{id}``) for as long."""
    ingest_stall_s: float = Field(default=120.0, gt=0)
    """An upload being read into a dataset whose API process has not renewed its heartbeat
    for this long is presumed lost: another API process's sweep takes it over."""

    @field_validator("data_dir", "blob_dir", "ingest_tmp_dir")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @field_validator("shared_memory_dir", "s3_endpoint_url", "tenant_quota_bytes",
                     "ingest_tmp_dir", "s3_access_key_id",
                     "s3_secret_access_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _s3_keys_in_pairs(self) -> Settings:
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both SHARDTRAIN_S3_ACCESS_KEY_ID and "
                             "SHARDTRAIN_S3_SECRET_ACCESS_KEY, or neither")
        return self

    @model_validator(mode="after")
    def _refuse_embedded_parts_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        # Each of these works only inside one process, so a production deployment with several
        # API and worker processes would silently lose jobs or data.
        problems = []
        if self.database_url.startswith("sqlite"):
            problems.append("SHARDTRAIN_DATABASE_URL is SQLite; use PostgreSQL")
        if self.is_embedded:
            problems.append("SHARDTRAIN_BROKER_URL is the in-process memory:// broker; use Redis")
        if self.redis_url is None:
            problems.append("SHARDTRAIN_REDIS_URL is unset, which runs every job on one rank")
        if self.blob_store == "local":
            # The API and the workers run in separate containers or hosts: a directory of one
            # is not the other's.
            problems.append("SHARDTRAIN_BLOB_STORE is local, a directory of one host; use s3")
        if problems:
            raise ValueError("unsafe settings for production: " + "; ".join(problems))
        return self

    @property
    def is_embedded(self) -> bool:
        """True when the broker runs in this process, so the workers must too."""
        return self.broker_url.startswith("memory://")


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read from the environment once."""
    return Settings()
