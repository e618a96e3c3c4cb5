"""Uploads in every format, deduplication, validation and size limits."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import api.routes.datasets as datasets_route
from core.npz import to_npz
from core.splits import ingest_order
from db.blobs import BlobStore
from db.blobs.datasets import StoredRows
from db.engine import SessionFactory
from db.models import Dataset
from tests.utils.api import refusal, upload
from tests.utils.data import blobs, regression

NPZ = {"Content-Type": "application/octet-stream"}


def as_csv(X: np.ndarray, y: np.ndarray, target: str = "label") -> bytes:
    """A header row, then the rows with the target last; floats written to round-trip."""
    header = ",".join([f"f{i}" for i in range(X.shape[1])] + [target])
    lines = [",".join([*(repr(float(v)) for v in row), str(label)])
             for row, label in zip(X, y, strict=True)]
    return "\n".join([header, *lines, ""]).encode()


def stored_arrays(factory: SessionFactory, store: BlobStore,
                  dataset_id: str) -> dict[str, np.ndarray]:
    """The rows as stored (X as it lies in the store, y as class indices or targets), put
    back in the order of the upload, and the dataset's classes."""
    with factory() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
    rows = StoredRows(store, dataset_id)
    X, y = rows.read(0, rows.manifest.n_rows)
    upload_order = np.argsort(ingest_order(len(X)))
    return {"X": X[upload_order], "y": y[upload_order],
            "classes": np.asarray(dataset.classes)}


def test_an_npz_upload_describes_the_data(client: TestClient, auth: dict[str, str]) -> None:
    X, y = blobs(n=120, features=4, classes=3)
    dataset = upload(client, auth, X, y, name="blobs")
    assert {k: dataset[k] for k in ("name", "n_rows", "n_features", "n_targets", "task",
                                    "classes")} == {
        "name": "blobs", "n_rows": 120, "n_features": 4, "n_targets": 1,
        "task": "classification", "classes": [0, 1, 2]}
    assert len(dataset["sha256"]) == 64 and dataset["size_bytes"] > X.nbytes
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=auth).json() == dataset


def test_the_same_data_in_any_format_is_stored_once(client: TestClient,
                                                    auth: dict[str, str]) -> None:
    X, y = blobs(n=40, features=3, classes=2, seed=4)
    first = client.post("/v1/datasets", content=to_npz({"X": X, "y": y}), headers={**auth, **NPZ})
    assert first.status_code == 201
    dataset_id = first.json()["id"]
    again = [
        client.post("/v1/datasets", content=to_npz({"X": X, "y": y}), headers={**auth, **NPZ}),
        client.post("/v1/datasets", params={"target": "label"}, content=as_csv(X, y),
                    headers={**auth, "Content-Type": "text/csv; charset=utf-8"}),
        client.post("/v1/datasets", content=json.dumps({"X": X.tolist(), "y": y.tolist()}),
                    headers={**auth, "Content-Type": "application/json"}),
        client.post("/v1/datasets", params={"target": "label"}, headers=auth,
                    files={"file": ("blobs.csv", as_csv(X, y), "text/csv")}),
    ]
    for response in again:
        assert response.status_code == 200, response.text
        assert response.json()["id"] == dataset_id
    assert len(client.get("/v1/datasets", headers=auth).json()["items"]) == 1


def test_storage_is_canonical(client: TestClient, auth: dict[str, str],
                              session_factory: SessionFactory, store: BlobStore) -> None:
    X, y = blobs(n=30, features=2, classes=2, dtype=np.float32)
    kept = upload(client, auth, X.astype(">f4"), y.astype(np.int8))  # big-endian, narrow ints
    arrays = stored_arrays(session_factory, store, kept["id"])
    assert arrays["X"].dtype == np.dtype("<f4") and arrays["y"].dtype == np.dtype("<i4")
    np.testing.assert_array_equal(arrays["X"], X)
    np.testing.assert_array_equal(arrays["classes"][arrays["y"]], y)
    assert upload(client, auth, X, y)["id"] == kept["id"]  # the same data, natively typed

    labels = np.array([b"cat", b"dog"] * 15)
    named = upload(client, auth, X, labels)
    assert named["classes"] == ["cat", "dog"]
    stored = stored_arrays(session_factory, store, named["id"])
    assert stored["classes"][stored["y"]].tolist() == ["cat", "dog"] * 15

    pixels = (X * 10 % 256).astype(np.uint8)  # X keeps its dtype: uint8 stays uint8
    assert stored_arrays(session_factory, store,
                         upload(client, auth, pixels, y)["id"])["X"].dtype == np.uint8


def test_csv_labels_and_targets(client: TestClient, auth: dict[str, str]) -> None:
    X, y = blobs(n=20, features=2, classes=2)
    words = np.where(y == 1, "dog", "cat")
    csv = {**auth, "Content-Type": "text/csv"}
    labels = client.post("/v1/datasets", params={"target": "animal"},
                         content=as_csv(X, words, "animal"), headers=csv)
    assert labels.status_code == 201, labels.text
    assert labels.json()["task"] == "classification"
    assert labels.json()["classes"] == ["cat", "dog"]

    targets = client.post("/v1/datasets", params={"target": "label"},
                          content=as_csv(X, X[:, 0] * 0.5), headers=csv)
    assert targets.status_code == 201, targets.text
    assert (targets.json()["task"], targets.json()["classes"]) == ("regression", None)


def test_json_regression_with_two_targets(client: TestClient, auth: dict[str, str]) -> None:
    X, y = regression(n=25, features=3, outputs=2)
    response = client.post("/v1/datasets", json={"X": X.tolist(), "y": y.tolist()},
                           headers=auth)
    assert response.status_code == 201, response.text
    assert response.json()["task"] == "regression"
    assert (response.json()["n_features"], response.json()["n_targets"]) == (3, 2)


def test_a_csv_upload_needs_its_target_column(client: TestClient,
                                              auth: dict[str, str]) -> None:
    X, y = blobs(n=10, features=2, classes=2)
    csv = {**auth, "Content-Type": "text/csv"}
    loc, message = refusal(client.post("/v1/datasets", content=as_csv(X, y), headers=csv))
    assert loc == ["query", "target"] and "target" in message
    loc, message = refusal(client.post("/v1/datasets", params={"target": "colour"},
                                       content=as_csv(X, y), headers=csv))
    assert loc == ["query", "target"] and "f0, f1, label" in message
    for table, problem in ((b"f0,f1,label\n1,2,0\n3,abc,1\n", "'abc'"),
                           (b"f0,f1,label\n1,2,0\n3,1\n", "columns")):
        _, message = refusal(client.post("/v1/datasets", params={"target": "label"},
                                         content=table, headers=csv))
        assert problem in message


def test_nan_and_infinity_are_refused(client: TestClient, auth: dict[str, str]) -> None:
    X, y = blobs(n=10, features=2, classes=2)
    X[3, 1] = np.nan
    loc, message = refusal(client.post("/v1/datasets", content=to_npz({"X": X, "y": y}),
                                       headers={**auth, **NPZ}))
    assert loc == ["body"] and "NaN" in message and "row 3" in message
    body = b'{"X": [[1, 2], [3, Infinity]], "y": [0, 1]}'
    _, message = refusal(client.post("/v1/datasets", content=body,
                                     headers={**auth, "Content-Type": "application/json"}))
    assert "NaN or Inf" in message


def test_rows_and_features_are_limited(make_client: Callable[..., TestClient],
                                       auth: dict[str, str]) -> None:
    client = make_client(max_rows=50, max_features=3)
    X, y = blobs(n=51, features=3)
    _, message = refusal(client.post("/v1/datasets", content=to_npz({"X": X, "y": y}),
                                     headers={**auth, **NPZ}))
    assert "max_rows=50" in message
    X, y = blobs(n=50, features=4)
    _, message = refusal(client.post("/v1/datasets", content=to_npz({"X": X, "y": y}),
                                     headers={**auth, **NPZ}))
    assert "max_features=3" in message


def test_a_body_over_the_limit_is_refused_before_it_is_read(
        make_client: Callable[..., TestClient], auth: dict[str, str]) -> None:
    client = make_client(max_body_bytes=2000)
    body = to_npz(dict(zip("Xy", blobs(n=100, features=4), strict=True)))
    assert len(body) > 2000
    declared = client.post("/v1/datasets", content=body, headers={**auth, **NPZ})
    _, message = refusal(declared, 413)
    assert "max_body_bytes=2000" in message

    def chunked() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they come
        stream = io.BytesIO(body)
        while chunk := stream.read(500):
            yield chunk

    streamed = client.post("/v1/datasets", content=chunked(), headers={**auth, **NPZ})
    _, message = refusal(streamed, 413)
    assert "max_body_bytes=2000" in message
    assert client.get("/v1/datasets", headers=auth).json()["items"] == []


def test_unreadable_uploads_are_refused(client: TestClient, auth: dict[str, str]) -> None:
    X, y = blobs(n=10, features=2, classes=2)
    npz = {**auth, **NPZ}
    _, message = refusal(client.post("/v1/datasets", content=b"not a zip", headers=npz))
    assert ".npz" in message
    pickled = io.BytesIO()
    np.savez(pickled, X=X, y=np.array([{"a": 1}] * 10, dtype=object))
    _, message = refusal(client.post("/v1/datasets", content=pickled.getvalue(), headers=npz))
    assert "pickle" in message
    _, message = refusal(client.post("/v1/datasets", content=to_npz({"X": X}), headers=npz))
    assert "lacks the arrays y" in message
    _, message = refusal(client.post("/v1/datasets", content=to_npz({"X": X, "y": y * 0}),
                                     headers=npz))
    assert "single class (0)" in message
    json_body = {**auth, "Content-Type": "application/json"}
    _, message = refusal(client.post("/v1/datasets", content=b'{"X": [[1], [2]], "Y": [0, 1]}',
                                     headers=json_body))
    assert "it lacks y; 'Y' not expected" in message
    _, message = refusal(client.post("/v1/datasets", params={"target": "label"},
                                     content=b"f0,f1,label\n",
                                     headers={**auth, "Content-Type": "text/csv"}))
    assert "header and no data rows" in message
    _, message = refusal(client.post("/v1/datasets", content=b"a,b",
                                     headers={**auth, "Content-Type": "text/plain"}), 415)
    assert "text/csv" in message
    loc, _ = refusal(client.post("/v1/datasets", headers=auth,
                                 files={"file": ("data.xlsx", b"...", "application/zip")}))
    assert loc == ["body", "file"]
    loc, _ = refusal(client.post("/v1/datasets", headers=auth, files={"other": ("a.csv", b"")}))
    assert loc == ["body", "file"]
    deep = b'{"X": ' + b"[" * 100_000 + b"]" * 100_000 + b', "y": [1]}'
    _, message = refusal(client.post("/v1/datasets", content=deep,
                                     headers={**auth, "Content-Type": "application/json"}))
    assert "nests too deep" in message


@pytest.mark.parametrize("member", ["X.npy", "X"])  # np.load takes either for X
def test_an_npz_whose_header_claims_more_than_it_holds_is_refused_unread(
        client: TestClient, auth: dict[str, str], member: str) -> None:
    """numpy would allocate the declared size first: here, 8 PB."""
    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w") as archive:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": "<f8", "fortran_order": False, "shape": (10**9, 10**6)})
        archive.writestr(member, header.getvalue())
        with archive.open("y.npy", "w") as stream:
            np.lib.format.write_array(stream, np.zeros(10, dtype=np.int64))
    _, message = refusal(client.post("/v1/datasets", content=forged.getvalue(),
                                     headers={**auth, **NPZ}))
    assert f"{member} declares shape (1000000000, 1000000)" in message


def test_datasets_are_listed_newest_first_by_pages(client: TestClient,
                                                   auth: dict[str, str]) -> None:
    ids = [upload(client, auth, *blobs(n=20, seed=seed))["id"] for seed in range(3)]
    first = client.get("/v1/datasets", params={"limit": 2}, headers=auth).json()
    assert [d["id"] for d in first["items"]] == ids[:0:-1]
    second = client.get("/v1/datasets", params={"limit": 2, "cursor": first["next_cursor"]},
                        headers=auth).json()
    assert [d["id"] for d in second["items"]] == ids[:1] and second["next_cursor"] is None
    loc, _ = refusal(client.get("/v1/datasets", params={"cursor": "nonsense"}, headers=auth))
    assert loc == ["query", "cursor"]


def test_an_upload_is_read_and_ingested_with_no_database_slot_held(
        app: FastAPI, client: TestClient, auth: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A slot only for each query of the ingest: a large upload, or many, must not take the
    connections that other requests need."""
    seen: list[tuple[str, int]] = []
    ingest, record_dataset = datasets_route.ingest, datasets_route.record_dataset

    def watched_ingest(source: Any, **kwargs: Any) -> Any:
        seen.append(("ingest", app.state.db_gate.in_use))
        return ingest(source, **kwargs)

    def watched_record(session: Any, **kwargs: Any) -> Any:
        seen.append(("record", app.state.db_gate.in_use))
        return record_dataset(session, **kwargs)

    monkeypatch.setattr(datasets_route, "ingest", watched_ingest)
    monkeypatch.setattr(datasets_route, "record_dataset", watched_record)
    upload(client, auth, *blobs())
    assert seen == [("ingest", 0), ("record", 1)]
