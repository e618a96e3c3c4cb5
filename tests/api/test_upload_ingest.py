"""What becomes of a complete upload: a dataset, or a failure naming the row; and the sweep
that takes over ingests whose process went silent and deletes expired uploads."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.main import create_app
from api.services.upload_ingest import IngestExecutor
from api.services.upload_sweep import MAX_INGEST_ATTEMPTS, sweep
from bench.seaweed import BUCKET
from db.base import utc_now
from db.blobs import MIN_PART, BlobStore, blob_store
from db.engine import SessionFactory, session_scope
from db.models import Upload
from db.settings import Settings
from tests.utils.blobs import leftovers
from tests.utils.uploads import BAD_PREFIX, PATCH, TUS, Gate, digest_ingest


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.services)])
def settings(request: pytest.FixtureRequest, migrated_sqlite_url: str, tmp_path: Any
             ) -> Settings:
    store: dict[str, str] = {}
    if request.param == "s3":
        store = request.getfixturevalue("seaweed").settings(
            BUCKET, prefix=f"ingest-{os.urandom(6).hex()}/")
    return Settings(data_dir=tmp_path, database_url=migrated_sqlite_url,
                    s3_part_bytes=MIN_PART, ingest_stall_s=1.0, **store)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings, ingest=digest_ingest)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def store(settings: Settings) -> BlobStore:
    return blob_store(settings)


def send(client: TestClient, auth: dict[str, str], data: bytes, *, upto: int | None = None
         ) -> str:
    """A new upload of ``data`` with its first ``upto`` bytes (default: all) sent."""
    url: str = client.post("/v1/uploads", headers={
        **auth, **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": "format Y3N2"}
    ).headers["Location"]
    body = data[:len(data) if upto is None else upto]
    answer = client.patch(url, content=body, headers={**auth, **PATCH, "Upload-Offset": "0"})
    assert answer.status_code == 204, answer.text
    return url


def settled(client: TestClient, auth: dict[str, str], url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        status: dict[str, Any] = client.get(url, headers=auth).json()
        if status["status"] in ("ready", "failed") or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def change(factory: SessionFactory, url: str, **values: Any) -> None:
    with session_scope(factory) as session:
        session.execute(update(Upload).where(Upload.id == url.rsplit("/", 1)[1])
                        .values(**values))


def test_a_bad_file_fails_naming_the_row_and_leaves_nothing(
        client: TestClient, auth: dict[str, str], store: BlobStore) -> None:
    url = send(client, auth, BAD_PREFIX + os.urandom(MIN_PART + 100))
    status = settled(client, auth, url)
    assert status["status"] == "failed" and status["dataset"] is None
    assert "row 3" in status["error"]
    assert list(store.keys("uploads/")) == [] and leftovers(store) == []
    assert client.get("/v1/datasets", headers=auth).json()["items"] == []


def test_the_same_bytes_twice_are_one_dataset(client: TestClient, auth: dict[str, str]
                                              ) -> None:
    data = os.urandom(1000)
    first = settled(client, auth, send(client, auth, data))
    second = settled(client, auth, send(client, auth, data))
    assert first["dataset"]["id"] == second["dataset"]["id"]
    assert first["dataset"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_expired_upload_is_deleted_with_its_bytes(
        client: TestClient, auth: dict[str, str], app: FastAPI, store: BlobStore,
        session_factory: SessionFactory) -> None:
    """Half sent (a part and a tail), then left: the sweep after its expiry deletes the row,
    the tail and the unfinished multipart upload; a fresh one stays."""
    url = send(client, auth, os.urandom(3 * MIN_PART), upto=MIN_PART + 10)
    fresh = send(client, auth, os.urandom(3 * MIN_PART), upto=10)
    assert leftovers(store) != [] and list(store.keys("uploads/")) != []
    change(session_factory, url, expires_at=utc_now() - timedelta(seconds=1))
    report = sweep(sessions=session_factory, settings=app.state.settings,
                   executor=app.state.ingests)
    assert report.expired == [url.rsplit("/", 1)[1]]
    assert client.head(url, headers={**auth, **TUS}).status_code == 404
    assert client.head(fresh, headers={**auth, **TUS}).status_code == 200
    fresh_id = fresh.rsplit("/", 1)[1]
    assert {key.split("/")[1] for key in store.keys("uploads/")} == {fresh_id}
    assert leftovers(store) == []  # the fresh one is a tail only, no multipart upload yet


def test_an_ingest_whose_process_went_silent_is_finished_by_another_sweep(
        settings: Settings, session_factory: SessionFactory, auth: dict[str, str]) -> None:
    """Process A's ingest hangs and its heartbeat stops (A is gone, as far as anyone can
    tell); B's sweep takes it over (attempt 2) and makes the dataset. When A wakes, its
    lease is lost: it writes nothing."""
    hung = Gate()
    a = create_app(settings, ingest=hung)
    with TestClient(a) as client:
        url = send(client, auth, os.urandom(MIN_PART + 5))
        assert hung.entered.wait(10)
        a.state.ingests.shutdown()  # the heartbeat stops; the ingest thread stays stuck
    upload_id = url.rsplit("/", 1)[1]
    b = IngestExecutor(ingest=digest_ingest, sessions=session_factory, settings=settings)
    report = sweep(sessions=session_factory, settings=settings, executor=b)
    assert report.resumed == []  # A's heartbeat is still fresh
    time.sleep(settings.ingest_stall_s + 0.2)
    report = sweep(sessions=session_factory, settings=settings, executor=b)
    assert report.resumed == [upload_id]
    with TestClient(create_app(settings, ingest=digest_ingest)) as reader:
        status = settled(reader, auth, url)
    assert status["status"] == "ready", status
    with session_scope(session_factory) as session:
        upload = session.get(Upload, upload_id)
        assert upload is not None and upload.attempt == 2 and upload.heartbeat_at is None
    hung.release.set()  # A wakes up: its outcome is refused, the dataset stays B's
    time.sleep(0.5)
    with session_scope(session_factory) as session:
        again = session.get(Upload, upload_id)
        assert again is not None and again.status == "ready" and again.attempt == 2
        assert again.dataset_id == status["dataset"]["id"]
    b.shutdown()


def test_an_ingest_that_breaks_down_is_retried_then_failed(
        settings: Settings, session_factory: SessionFactory, auth: dict[str, str]) -> None:
    broken: list[int] = []

    def breaks(source: Any, **kwargs: Any) -> Any:
        broken.append(1)
        raise OSError("the disk is full")

    app = create_app(settings, ingest=breaks)
    with TestClient(app) as client:
        url = send(client, auth, os.urandom(100))
        upload_id = url.rsplit("/", 1)[1]
        deadline = time.monotonic() + 10
        while not broken or app.state.ingests.held():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = client.get(url, headers=auth).json()
        assert status["status"] == "ingesting"  # let go at once, for the next sweep
        assert status["error"] == "the ingest broke down (OSError)"
        for attempt in range(2, MAX_INGEST_ATTEMPTS + 1):
            report = sweep(sessions=session_factory, settings=settings,
                           executor=app.state.ingests)
            assert report.resumed == [upload_id]
            while len(broken) < attempt or app.state.ingests.held():
                time.sleep(0.05)
        report = sweep(sessions=session_factory, settings=settings, executor=app.state.ingests)
        assert report.failed == [upload_id]
        status = client.get(url, headers=auth).json()
        assert status["status"] == "failed" and "in 3 attempts" in status["error"]
        assert "OSError" in status["error"] and len(broken) == MAX_INGEST_ATTEMPTS
