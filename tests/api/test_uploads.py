"""The tus protocol of ``/v1/uploads``, in-process, on the local store and on S3 alike:
creation and its limits, offsets across parts, refusals, a cut inside a PATCH, two PATCHes
at once, termination, and another tenant's upload."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from api.main import create_app
from bench.seaweed import BUCKET
from db.blobs import MIN_PART, BlobStore, blob_store
from db.settings import Settings
from tests.utils.blobs import leftovers
from tests.utils.server import serving
from tests.utils.uploads import PATCH, TUS, MiB, digest_ingest

LIMIT = 40 * MiB


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.services)])
def settings(request: pytest.FixtureRequest, migrated_sqlite_url: str, tmp_path: Any
             ) -> Settings:
    """Small parts (S3's least), a small body limit and dataset limit; the store of the
    parameter (S3: a prefix of its own on the session's SeaweedFS)."""
    store: dict[str, str] = {}
    if request.param == "s3":
        store = request.getfixturevalue("seaweed").settings(
            BUCKET, prefix=f"uploads-{os.urandom(6).hex()}/")
    return Settings(data_dir=tmp_path, database_url=migrated_sqlite_url,
                    s3_part_bytes=MIN_PART, max_body_bytes=MiB, max_dataset_bytes=LIMIT,
                    **store)


@pytest.fixture
def quota_refusals() -> list[int]:
    """Upload lengths the quota stand-in refuses."""
    return []


@pytest.fixture
def app(settings: Settings, quota_refusals: list[int]) -> FastAPI:
    def check_quota(session: Any, tenant_id: str, adding: int, settings: Settings) -> None:
        if adding in quota_refusals:
            raise HTTPException(413, f"over tenant_quota_bytes: adding {adding} bytes")

    return create_app(settings, ingest=digest_ingest, check_quota=check_quota)


@pytest.fixture
def store(app: FastAPI) -> BlobStore:
    return blob_store(app.state.settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def create(client: TestClient, auth: dict[str, str], length: int, **headers: str) -> str:
    answer = client.post("/v1/uploads", headers={**auth, **TUS, "Upload-Length": str(length),
                                                 "Upload-Metadata": "filename ZC5ucHo=",
                                                 **headers})
    assert answer.status_code == 201, answer.text
    assert answer.headers["Tus-Resumable"] == "1.0.0" and "Upload-Expires" in answer.headers
    location: str = answer.headers["Location"]
    assert location.startswith("/v1/uploads/")
    return location


def offset_of(client: TestClient, auth: dict[str, str], url: str) -> int:
    answer = client.head(url, headers={**auth, **TUS})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    return int(answer.headers["Upload-Offset"])


def settled(client: TestClient, auth: dict[str, str], url: str) -> dict[str, Any]:
    """The upload's status once its ingest has ended."""
    deadline = time.monotonic() + 20
    while True:
        status: dict[str, Any] = client.get(url, headers=auth).json()
        if status["status"] in ("ready", "failed") or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_options_and_creation_limits(client: TestClient, auth: dict[str, str],
                                     quota_refusals: list[int]) -> None:
    answer = client.options("/v1/uploads")
    assert answer.status_code == 204
    assert (answer.headers["Tus-Version"], answer.headers["Tus-Extension"],
            answer.headers["Tus-Max-Size"], answer.headers["Shardtrain-Max-Body-Bytes"]) == (
        "1.0.0", "creation,expiration,termination", str(LIMIT), str(MiB))

    def post(**headers: str) -> Any:
        return client.post("/v1/uploads", headers={**auth, **headers})

    assert post(**{"Upload-Length": "10"}).status_code == 412
    assert post(**TUS).status_code == 400  # Upload-Length is required (no defer-length)
    for bad in ("-1", "1e3", "0"):
        assert post(**TUS, **{"Upload-Length": bad}).status_code == 400
    answer = post(**TUS, **{"Upload-Length": str(LIMIT + 1)})
    assert answer.status_code == 413 and "max_dataset_bytes=" in answer.json()["detail"]
    answer = post(**TUS, **{"Upload-Length": "10", "Upload-Metadata": "name !!!"})
    assert answer.status_code == 400 and "'name'" in answer.json()["detail"]
    answer = post(**TUS, **{"Upload-Length": "10", "Upload-Metadata": "name /w=="})
    assert answer.status_code == 422 and "not UTF-8" in answer.text
    answer = post(**TUS, **{"Upload-Length": "10", "Upload-Metadata": "filename ZC5iaW4="})
    assert answer.status_code == 422 and "d.bin" in answer.text  # no format to read it as
    answer = post(**TUS, **{"Upload-Length": "10", "Upload-Metadata": "format eGxz"})
    assert answer.status_code == 422 and "'xls'" in answer.text
    quota_refusals.append(12345)
    answer = post(**TUS, **{"Upload-Length": "12345", "Upload-Metadata": "format Y3N2"})
    assert answer.status_code == 413 and "tenant_quota_bytes" in answer.text
    assert client.post("/v1/uploads", headers={**TUS, "Upload-Length": "10"}).status_code \
        == 401


def test_patches_across_parts_then_a_dataset(client: TestClient, auth: dict[str, str],
                                             store: BlobStore) -> None:
    """1 MiB PATCHes, each leaving a tail that the next reads back, until a part is full;
    the last one hands the whole file to the ingest, which is given exactly its bytes."""
    data = os.urandom(2 * MIN_PART + 300_000)
    url = create(client, auth, len(data), **{"Upload-Metadata": "filename ZC5ucHo=,filetype"})
    head = client.head(url, headers={**auth, **TUS})
    assert (head.headers["Upload-Length"], head.headers["Upload-Metadata"]) == (
        str(len(data)), "filename ZC5ucHo=,filetype,format bnB6,name ZC5ucHo=")
    offset = 0
    while offset < len(data):
        piece = data[offset:offset + MiB]
        answer = client.patch(url, content=piece,
                              headers={**auth, **PATCH, "Upload-Offset": str(offset)})
        assert answer.status_code == 204, answer.text
        offset += len(piece)
        assert answer.headers["Upload-Offset"] == str(offset)
        assert offset_of(client, auth, url) == offset
    status = settled(client, auth, url)
    assert status["status"] == "ready", status
    assert status["dataset"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert (status["offset"], status["length"], status["error"]) == (len(data), len(data), None)
    assert status["dataset"]["name"] == "d.npz"
    assert list(store.keys("uploads/")) == [] and leftovers(store) == []
    # The last PATCH again (its answer was lost): nothing changes; more bytes are refused.
    answer = client.patch(url, content=b"", headers={**auth, **PATCH,
                                                     "Upload-Offset": str(len(data))})
    assert answer.status_code == 204 and answer.headers["Upload-Offset"] == str(len(data))
    answer = client.patch(url, content=b"x", headers={**auth, **PATCH,
                                                      "Upload-Offset": str(len(data))})
    assert answer.status_code == 409 and "complete" in answer.text


def test_patch_refusals_and_another_tenant(client: TestClient, auth: dict[str, str],
                                           other_auth: dict[str, str]) -> None:
    url = create(client, auth, 1000)
    answer = client.patch(url, content=b"x", headers={**auth, **TUS, "Upload-Offset": "0"})
    assert answer.status_code == 415
    assert client.patch(url, content=b"x", headers={**auth, **PATCH}).status_code == 400
    answer = client.patch(url, content=b"x", headers={**auth, **PATCH, "Upload-Offset": "5"})
    assert answer.status_code == 409 and answer.headers["Upload-Offset"] == "0"
    answer = client.patch(url, content=b"x" * 1001,
                          headers={**auth, **PATCH, "Upload-Offset": "0"})
    assert answer.status_code == 413 and "Upload-Length 1000" in answer.text
    assert offset_of(client, auth, url) == 0  # and the refusal let the upload go
    for method in ("HEAD", "PATCH", "DELETE"):
        answer = client.request(method, url, content=b"x",
                                headers={**other_auth, **PATCH, "Upload-Offset": "0"})
        assert answer.status_code == 404, method
    assert client.get(url, headers=other_auth).status_code == 404
    assert client.get(url, headers=auth).json()["status"] == "receiving"
    assert client.head("/v1/uploads/" + "0" * 32, headers={**auth, **TUS}).status_code == 404
    nowhere = client.patch("/v1/uploads/" + "0" * 32, headers={**auth, **TUS,
                                                               "Upload-Offset": "0"})
    assert nowhere.status_code == 404  # before the body's type is looked at


def test_a_patch_past_the_body_limit_is_stored(client: TestClient, auth: dict[str, str]
                                               ) -> None:
    """max_body_bytes (1 MiB here) holds for every request but a PATCH of an upload."""
    data = os.urandom(3 * MiB)
    url = create(client, auth, len(data))
    answer = client.patch(url, content=data, headers={**auth, **PATCH, "Upload-Offset": "0"})
    assert answer.status_code == 204 and answer.headers["Upload-Offset"] == str(len(data))
    answer = client.post("/v1/datasets", content=data,
                         headers={**auth, "Content-Type": "application/octet-stream"})
    assert answer.status_code == 413 and "max_body_bytes" in answer.text


def test_termination_leaves_nothing(client: TestClient, auth: dict[str, str],
                                    store: BlobStore) -> None:
    url = create(client, auth, 3 * MIN_PART)
    answer = client.patch(url, content=os.urandom(MIN_PART + 10),
                          headers={**auth, **PATCH, "Upload-Offset": "0"})
    assert answer.headers["Upload-Offset"] == str(MIN_PART + 10)  # a part and a tail
    assert client.delete(url, headers={**auth, **TUS}).status_code == 204
    assert client.head(url, headers={**auth, **TUS}).status_code == 404
    assert list(store.keys("uploads/")) == [] and leftovers(store) == []


def raw_patch(port: int, url: str, auth: dict[str, str], *, offset: int, declared: int
              ) -> socket.socket:
    """A PATCH whose headers promise ``declared`` bytes; the caller sends the body."""
    raw = socket.create_connection(("127.0.0.1", port))
    headers = "".join(f"{k}: {v}\r\n" for k, v in {
        **auth, **PATCH, "Upload-Offset": str(offset), "Content-Length": str(declared),
        "Host": "127.0.0.1"}.items())
    raw.sendall(f"PATCH {url} HTTP/1.1\r\n{headers}\r\n".encode())
    return raw


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_cut_patch_keeps_what_came_and_a_second_writer_waits(
        app: FastAPI, auth: dict[str, str]) -> None:
    """A PATCH promising 12 MiB sends 7.5 MiB and stalls: another PATCH meanwhile is refused
    (409, Retry-After). Then its connection closes: HEAD says 7.5 MiB (a part and a tail),
    and the rest goes on from there."""
    data = os.urandom(12 * MiB)
    with serving(app) as base, httpx.Client(base_url=base, headers=auth) as http:
        url = http.post("/v1/uploads", headers={**TUS, "Upload-Length": str(len(data)),
                                                "Upload-Metadata": "format bnB6"}
                        ).headers["Location"]

        def offset() -> int:
            return int(http.head(url, headers=TUS).headers["Upload-Offset"])

        sent = 7 * MiB + MiB // 2
        with raw_patch(int(base.rsplit(":", 1)[1]), url, auth, offset=0,
                       declared=len(data)) as raw:
            raw.sendall(data[:sent])
            second = http.patch(url, content=b"x", headers={**PATCH, "Upload-Offset": "0"})
            assert second.status_code == 409 and second.headers["Retry-After"] == "5"
            assert "another request is writing" in second.text
        # The server stores what came when it sees the close, on its own time.
        wait_for(lambda: offset() == sent)
        answer = http.patch(url, content=data[sent:],
                            headers={**PATCH, "Upload-Offset": str(sent)})
        assert answer.status_code == 204, answer.text
        wait_for(lambda: http.get(url).json()["status"] == "ready")
        assert http.get(url).json()["dataset"]["sha256"] == hashlib.sha256(data).hexdigest()
