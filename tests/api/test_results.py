"""Weights downloads at every checkpoint, and predictions that match them."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.npz import from_npz
from core.spec import TrainSpec
from core.training import Trainer
from tests.utils.api import SPEC, refusal, submitted, upload
from tests.utils.data import blobs, regression


def forward(arrays: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """The spec's network written out in numpy: tanh hidden layers, softmax output."""
    layers = sum(1 for name in arrays if name.startswith("W"))
    a = X
    for i in range(1, layers + 1):
        z = a @ arrays[f"W{i}"].astype(np.float64) + arrays[f"b{i}"]
        if i < layers:
            a = np.tanh(z)
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            a = e / e.sum(axis=1, keepdims=True)
    return a


def download(client: TestClient, auth: dict[str, str], job_id: str,
             checkpoint: str = "final") -> dict[str, np.ndarray]:
    response = client.get(f"/v1/jobs/{job_id}/weights", params={"checkpoint": checkpoint},
                          headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    return from_npz(response.content)


@pytest.fixture
def trained(client: TestClient, auth: dict[str, str],
            finish: Callable[..., Trainer]) -> tuple[str, np.ndarray, np.ndarray]:
    X, y = blobs(n=120, features=4, classes=3)
    dataset = upload(client, auth, X, y)["id"]
    job_id = submitted(client, auth, dataset)["id"]
    finish(job_id, X, y)
    return job_id, X, y


def test_predictions_equal_numpy_on_the_downloaded_weights(
        app: FastAPI, client: TestClient, auth: dict[str, str],
        trained: tuple[str, np.ndarray, np.ndarray]) -> None:
    job_id, X, _ = trained
    arrays = download(client, auth, job_id)
    assert {"W1", "b1", "W2", "b2", "spec", "classes"} <= set(arrays)
    assert arrays["W1"].shape == (4, 8) and arrays["b2"].shape == (3,)
    assert json.loads(str(arrays["spec"]))["epochs"] == SPEC["epochs"]

    expected = forward(arrays, X)
    response = client.post(f"/v1/jobs/{job_id}/predict", json={"X": X.tolist()}, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    np.testing.assert_allclose(body["outputs"], expected, rtol=1e-4, atol=1e-6)
    assert body["labels"] == arrays["classes"][np.argmax(expected, axis=1)].tolist()
    assert len(app.state.models) == 1  # the finished job's model stays loaded
    again = client.post(f"/v1/jobs/{job_id}/predict", json={"X": X[:3].tolist()}, headers=auth)
    assert again.json()["outputs"] == body["outputs"][:3]


def test_every_checkpoint_downloads_as_weights(
        client: TestClient, auth: dict[str, str],
        trained: tuple[str, np.ndarray, np.ndarray]) -> None:
    job_id, X, y = trained
    final = download(client, auth, job_id)
    for checkpoint in ("latest", "18"):
        arrays = download(client, auth, job_id, checkpoint)
        for name in ("W1", "b1", "W2", "b2"):
            np.testing.assert_array_equal(arrays[name], final[name])
    initial = download(client, auth, job_id, "0")
    spec = TrainSpec.from_dict({k: v for k, v in SPEC.items() if k != "name"})
    for name, expected in Trainer(spec, X, y).weights().items():
        np.testing.assert_array_equal(initial[name], expected)

    _, message = refusal(client.get(f"/v1/jobs/{job_id}/weights",
                                    params={"checkpoint": "5"}, headers=auth), 404)
    assert "no checkpoint at step 5" in message
    _, message = refusal(client.get(f"/v1/jobs/{job_id}/weights",
                                    params={"checkpoint": str(10**30)}, headers=auth), 404)
    assert f"no checkpoint at step {10**30}" in message
    _, message = refusal(client.get(f"/v1/jobs/{job_id}/weights",
                                    params={"checkpoint": "best"}, headers=auth), 404)
    assert "no best weights" in message
    loc, _ = refusal(client.get(f"/v1/jobs/{job_id}/weights",
                                params={"checkpoint": "first"}, headers=auth))
    assert loc == ["query", "checkpoint"]


def test_without_validation_rows_the_best_weights_are_the_final_ones(
        client: TestClient, auth: dict[str, str], finish: Callable[..., Trainer]) -> None:
    X, y = blobs(n=120, features=4, classes=3)
    job_id = submitted(client, auth, upload(client, auth, X, y)["id"],
                       validation_fraction=0.0)["id"]
    finish(job_id, X, y)
    best, final = download(client, auth, job_id, "best"), download(client, auth, job_id)
    assert best.keys() == final.keys()
    for name in final:
        np.testing.assert_array_equal(best[name], final[name])


def test_a_running_job_has_no_final_weights(client: TestClient, auth: dict[str, str]) -> None:
    dataset = upload(client, auth, *blobs())["id"]
    job_id = submitted(client, auth, dataset)["id"]
    _, message = refusal(client.get(f"/v1/jobs/{job_id}/weights", headers=auth), 404)
    assert "no final weights" in message and "queued" in message
    _, message = refusal(client.post(f"/v1/jobs/{job_id}/predict", json={"X": [[0, 0, 0, 0]]},
                                     headers=auth), 409)
    assert "no final weights" in message


def test_bad_rows_are_refused(client: TestClient, auth: dict[str, str],
                              trained: tuple[str, np.ndarray, np.ndarray]) -> None:
    job_id = trained[0]
    url = f"/v1/jobs/{job_id}/predict"
    loc, message = refusal(client.post(url, json={"X": [[1.0, 2.0]]}, headers=auth))
    assert loc == ["body", "X"] and "(rows, 4)" in message
    loc, _ = refusal(client.post(url, json={"X": [[1, 2, 3, 4], [1, 2]]}, headers=auth))
    assert loc == ["body", "X"]
    loc, _ = refusal(client.post(url, content=b'{"X": [[1, 2, 3, NaN]]}',
                                 headers={**auth, "Content-Type": "application/json"}))
    assert loc == ["body", "X", 0, 3]
    loc, _ = refusal(client.post(url, json={"X": []}, headers=auth))
    assert loc == ["body", "X"]


def test_a_regressor_predicts_values_without_labels(
        client: TestClient, auth: dict[str, str], finish: Callable[..., Trainer]) -> None:
    X, y = regression(n=60, features=3, outputs=2)
    dataset = upload(client, auth, X, y)["id"]
    job_id = submitted(client, auth, dataset, loss="mse",
                       model={"hidden": [8], "activation": "tanh", "output": "linear"})["id"]
    trainer = finish(job_id, X, y)
    body = client.post(f"/v1/jobs/{job_id}/predict", json={"X": X[:5].tolist()},
                       headers=auth).json()
    assert body["labels"] is None
    np.testing.assert_allclose(body["outputs"], trainer.model().predict(X[:5]).outputs,
                               rtol=1e-6)
