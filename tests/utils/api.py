"""Builders for API tests: uploads and job submissions through a test client."""

from __future__ import annotations

from typing import Any

import httpx2
import numpy as np
from fastapi.testclient import TestClient

from core.npz import to_npz

# Small enough to train in milliseconds: 4 features, 8 hidden units, 3 classes.
SPEC: dict[str, Any] = {
    "name": "blobs", "model": {"hidden": [8], "activation": "tanh", "output": "softmax"},
    "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.01},
    "epochs": 3, "batch_size": 16, "seed": 1, "validation_fraction": 0.2, "shards": 2,
}


def upload(client: TestClient, headers: dict[str, str], X: np.ndarray, y: np.ndarray,
           **params: Any) -> dict[str, Any]:
    """Upload ``(X, y)`` as an .npz; returns the dataset."""
    response = client.post("/v1/datasets", content=to_npz({"X": X, "y": y}), params=params,
                           headers={**headers, "Content-Type": "application/octet-stream"})
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def submit(client: TestClient, headers: dict[str, str], dataset_id: str,
           **fields: Any) -> httpx2.Response:
    """POST ``SPEC`` on the dataset, with ``fields`` replacing its top-level fields."""
    return client.post("/v1/jobs", json={**SPEC, "dataset": dataset_id, **fields},
                       headers=headers)


def submitted(client: TestClient, headers: dict[str, str], dataset_id: str,
              **fields: Any) -> dict[str, Any]:
    """``submit``, asserting that the job was created."""
    response = submit(client, headers, dataset_id, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def refusal(response: httpx2.Response, status: int = 422) -> tuple[list[Any], str]:
    """For a refused request: the location of its first error and every message, joined."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if isinstance(detail, str):
        return [], detail
    return detail[0]["loc"], " | ".join(error["msg"] for error in detail)
