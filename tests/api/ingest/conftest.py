"""Ingests on a database of their own, each test once on the local directory store and once
on S3 (the session's SeaweedFS), with a spool directory that must end empty."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

from api.services.datasets import record_dataset, store_data
from api.services.ingest import UploadFormat, ingest
from bench.seaweed import SeaweedS3
from core.splits import ingest_order
from db.blobs import BlobStore
from db.blobs.datasets import StoredRows
from db.blobs.local import LocalBlobStore
from db.blobs.s3 import s3_client
from db.engine import SessionFactory, make_engine, make_session_factory, session_scope
from db.models import Dataset
from db.queries.datasets import dataset_with_content
from db.queries.tenants import create_tenant
from db.settings import Settings
from tests.utils.blobs import leftovers, s3_store


@pytest.fixture(scope="module")
def s3(seaweed: SeaweedS3) -> Any:
    return s3_client(endpoint_url=seaweed.endpoint, region="us-east-1",
                     access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs", fsync=False)
    return s3_store(request.getfixturevalue("s3"))


@dataclass
class Ingester:
    """Ingests uploads as the API does (``ingest`` with ``record_dataset``), and says what
    was stored and what was left behind."""

    store: BlobStore
    settings: Settings
    factory: SessionFactory

    def __call__(self, body: bytes | IO[bytes], fmt: UploadFormat, target: str | None = None,
                 **settings: Any) -> Dataset:
        current = self.settings.model_copy(update=settings)
        source = io.BytesIO(body) if isinstance(body, bytes) else body
        with session_scope(self.factory) as session:
            tenant = create_tenant(session, name="acme").id
            dataset, _ = ingest(
                source, fmt=fmt, target=target, store=self.store, settings=current,  # type: ignore[arg-type]
                known=lambda sha256: dataset_with_content(session, tenant_id=tenant,
                                                          sha256=sha256),
                record=lambda dataset_id, facts: record_dataset(
                    session, tenant_id=tenant, name="upload", dataset_id=dataset_id,
                    facts=facts, settings=current))
        return dataset

    def arrays(self, X: np.ndarray, y: np.ndarray, tenant: str = "acme") -> Dataset:
        """``(X, y)`` stored from memory (``store_data``, as the tests' ``add_dataset``)."""
        with session_scope(self.factory) as session:
            dataset, _ = store_data(session=session, store=self.store,
                                    tenant_id=create_tenant(session, name=tenant).id,
                                    name="arrays", X=X, y=y)
        return dataset

    def stored(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """X and y (labels, or targets) in stored order, as the store holds them."""
        rows = StoredRows(self.store, dataset.id)
        X, y = rows.read(0, rows.manifest.n_rows)
        return X, (y if dataset.classes is None else np.asarray(dataset.classes)[y])

    def left(self) -> list[str]:
        """Dataset blobs, unfinished writes and spool files: none after a refused upload."""
        spool = self.settings.ingest_tmp_dir
        assert spool is not None
        return sorted([*self.store.keys("datasets/"), *leftovers(self.store),
                       *os.listdir(spool)])

    def datasets(self) -> int:
        with self.factory() as session:
            return session.query(Dataset).count()


@pytest.fixture
def ingester(store: BlobStore, tmp_path: Path, migrated_sqlite_url: str) -> Iterator[Ingester]:
    spool = tmp_path / "spool"
    spool.mkdir()
    engine = make_engine(migrated_sqlite_url)
    yield Ingester(store, Settings(data_dir=tmp_path, database_url=migrated_sqlite_url,
                                   ingest_tmp_dir=spool), make_session_factory(engine))
    engine.dispose()


def in_stored_order(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the store must hold of an upload of ``(X, y)``: ``core.splits.ingest_order``."""
    order = ingest_order(len(X))
    return X[order], y[order]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reader in many batches, so that rows cross batch and block boundaries."""
    monkeypatch.setattr("api.services.ingest.npz.BATCH_BYTES", 16 * 1024)
    monkeypatch.setattr("api.services.ingest.parquet.BATCH_ROWS", 3000)
    monkeypatch.setattr("api.services.ingest.csv_arrow.BLOCK_BYTES", 64 * 1024)
    monkeypatch.setattr("api.services.ingest.csv_text.BATCH_CELLS", 8192)
    monkeypatch.setattr("api.services.ingest.table.BATCH_BYTES", 16 * 1024)
