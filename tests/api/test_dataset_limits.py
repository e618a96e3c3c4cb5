"""Uploads in Parquet and the refusals of the single-request path: a file that is not a
dataset, ``MAX_DATASET_BYTES`` and the tenant's storage quota (413, naming the limit)."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from core.npz import to_npz
from db.blobs import BlobStore
from tests.utils.api import refusal, upload
from tests.utils.blobs import leftovers
from tests.utils.data import blobs

NPZ = {"Content-Type": "application/octet-stream"}


def parquet(X: np.ndarray, y: np.ndarray) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({**{f"f{i}": X[:, i] for i in range(X.shape[1])}, "label": y}), out)
    return out.getvalue()


def test_parquet_by_content_type_or_file_name(client: TestClient, auth: dict[str, str]) -> None:
    X, y = blobs(n=50, features=3, dtype=np.float32)
    first = client.post("/v1/datasets", params={"target": "label"}, content=parquet(X, y),
                        headers={**auth, "Content-Type": "application/vnd.apache.parquet"})
    assert first.status_code == 201, first.text
    assert (first.json()["n_rows"], first.json()["classes"]) == (50, [0, 1, 2])
    again = client.post("/v1/datasets", params={"target": "label"}, headers=auth,
                        files={"file": ("blobs.parquet", parquet(X, y), "application/zip")})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert upload(client, auth, X, y)["id"] == first.json()["id"]  # the same data as an .npz
    loc, message = refusal(client.post("/v1/datasets", content=parquet(X, y),
                                       headers={**auth, "Content-Type": "application/x-parquet"}))
    assert loc == ["query", "target"] and "target=<column name>" in message
    _, message = refusal(client.post("/v1/datasets", content=parquet(X, y),
                                     headers={**auth, **NPZ}))
    assert "this is a Parquet file" in message


def test_an_npy_is_not_a_dataset(client: TestClient, auth: dict[str, str]) -> None:
    array = io.BytesIO()
    np.save(array, np.ones((3, 2)))
    loc, message = refusal(client.post("/v1/datasets", headers=auth,
                                       files={"file": ("X.npy", array.getvalue())}))
    assert loc == ["body", "file"] and "an .npy holds one array" in message
    _, message = refusal(client.post("/v1/datasets", content=array.getvalue(),
                                     headers={**auth, **NPZ}))
    assert "numpy.savez('data.npz', X=X, y=y)" in message


def test_an_upload_past_max_dataset_bytes_is_a_413(make_client: Callable[..., TestClient],
                                                   auth: dict[str, str]) -> None:
    client = make_client(max_dataset_bytes=1000)
    body = to_npz(dict(zip("Xy", blobs(n=100, features=4), strict=True)))
    _, message = refusal(client.post("/v1/datasets", content=body, headers={**auth, **NPZ}),
                         413)
    assert message == (f"the upload holds {len(body)} bytes, more than the limit "
                       "max_dataset_bytes=1000")
    # Rows that decode past it are refused as soon as their header says so.
    zeros = io.BytesIO()
    np.savez_compressed(zeros, X=np.zeros((1000, 10)), y=np.arange(1000) % 2)
    client = make_client(max_dataset_bytes=50_000)
    _, message = refusal(client.post("/v1/datasets", content=zeros.getvalue(),
                                     headers={**auth, **NPZ}))
    assert message == ("X's 1000 rows take 80000 bytes, more than the limit "
                       "max_dataset_bytes=50000")


def test_the_tenant_quota_is_a_413_naming_it_and_the_use(
        make_client: Callable[..., TestClient], auth: dict[str, str],
        other_auth: dict[str, str], store: BlobStore) -> None:
    client = make_client(tenant_quota_bytes=20_000)
    kept = upload(client, auth, *blobs(n=200, features=4))  # 200 x (32 + 4) = 7,200 bytes
    assert kept["size_bytes"] == 7200
    body = to_npz(dict(zip("Xy", blobs(n=400, features=4, seed=1), strict=True)))
    # Refused on the upload's size, before it is read ...
    _, message = refusal(client.post("/v1/datasets", content=body, headers={**auth, **NPZ}),
                         413)
    assert message.startswith("storage quota exceeded: tenant_quota_bytes=20000, and you hold "
                              f"7200 bytes already (datasets, uploads, checkpoints and weights)"
                              f"; this adds {len(body)}.")
    # ... or, once read, on the rows it decodes to (a compressed upload is small).
    zeros = io.BytesIO()
    np.savez_compressed(zeros, X=np.zeros((1000, 10)), y=np.arange(1000) % 2)
    _, message = refusal(client.post("/v1/datasets", content=zeros.getvalue(),
                                     headers={**auth, **NPZ}), 413)
    assert "tenant_quota_bytes=20000, and you hold 7200 bytes already" in message
    assert "this adds 84000." in message
    assert {key.split("/")[1] for key in store.keys("datasets/")} == {kept["id"]}
    assert leftovers(store) == []
    # The quota is each tenant's own.
    assert client.post("/v1/datasets", content=zeros.getvalue(),
                       headers={**other_auth, **NPZ}).status_code == 413
    assert upload(client, other_auth, *blobs(n=200, features=4, seed=2))["size_bytes"] == 7200
