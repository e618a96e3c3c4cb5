"""The client commands (``submit``, ``watch``, ``runs``, ``history``, ``weights``, ``predict``,
``cancel``, ``datasets upload`` and ``delete``) against the live embedded service.

The service's data directory is the process's (``SHARDTRAIN_DATA_DIR``), so the commands find
its URL and token in the file ``serve`` writes unless a test passes others.
"""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from api.cli import app
from api.cli.local import LocalService
from api.client import ApiError, Client
from core.npz import to_npz
from tests.utils.api import SPEC
from tests.utils.data import blobs
from tests.utils.server import free_port

runner = CliRunner()


def shardtrain(*args: str | Path, **env: str) -> Result:
    return runner.invoke(app, [str(arg) for arg in args], env=env or None)


@pytest.fixture
def data_csv(tmp_path: Path) -> Path:
    """160 rows of 4 features and a string label column, ``species``, in the middle."""
    X, y = blobs(n=160, seed=4)
    path = tmp_path / "blobs.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["a", "b", "species", "c", "d"])
        for row, label in zip(X.tolist(), y.tolist(), strict=True):
            writer.writerow([*row[:2], f"kind-{label}", *row[2:]])
    return path


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**SPEC, "name": "cli-run", "tags": {"via": "cli"}}))
    return path


def test_submit_with_data_and_wait_then_query_the_run(
        live: LocalService, data_csv: Path, spec_file: Path, tmp_path: Path) -> None:
    submitted = shardtrain("submit", spec_file, "--data", data_csv, "--target", "species",
                           "--wait")
    assert submitted.exit_code == 0, submitted.output
    assert submitted.stdout.startswith("succeeded: train loss ")
    job_id = submitted.stderr.split("job ", 1)[1].split(":", 1)[0]

    runs = shardtrain("runs", "--status", "succeeded", "--tag", "via:cli", "--order",
                      "-final_val_accuracy")
    assert runs.exit_code == 0 and job_id in runs.stdout and "cli-run" in runs.stdout

    export = tmp_path / "history.csv"
    assert shardtrain("history", job_id, "--csv", export).exit_code == 0
    rows = list(csv.DictReader(export.open()))
    assert [int(row["step"]) for row in rows] == list(range(1, 25))
    assert sum(row["val_loss"] != "" for row in rows) == 3  # one per epoch end
    plot = shardtrain("history", job_id)
    assert plot.exit_code == 0 and "train" in plot.stdout and "validation" in plot.stdout

    weights = tmp_path / "w.npz"
    assert shardtrain("weights", job_id, "-o", weights).exit_code == 0
    with np.load(weights) as npz:
        assert npz["W1"].shape == (4, 8) and "spec" in npz.files
    nowhere = shardtrain("weights", job_id, "-o", tmp_path / "no-such-dir" / "w.npz")
    assert nowhere.exit_code == 1
    assert nowhere.stderr.startswith("error: cannot write ") and "Traceback" not in nowhere.output

    # A page's hint is the whole command for the next one: the order and filters go with it.
    again = shardtrain("submit", spec_file, "--data", data_csv, "--target", "species", "--wait")
    assert again.exit_code == 0, again.output
    first = shardtrain("runs", "--tag", "via:cli", "--order", "final_val_loss", "--limit", "1")
    hint = first.stderr.strip().splitlines()[-1]
    assert hint.startswith("more: shardtrain runs --tag via:cli --order final_val_loss ")
    following = shardtrain(*shlex.split(hint.removeprefix("more: "))[1:])
    assert following.exit_code == 0, following.output
    ids = [out.stdout.splitlines()[1].split()[0] for out in (first, following)]
    assert ids[0] != ids[1]

    predicted = shardtrain("predict", job_id, data_csv, "--target", "species")
    assert predicted.exit_code == 0, predicted.output
    labels = predicted.stdout.split()
    assert len(labels) == 160 and set(labels) <= {"kind-0", "kind-1", "kind-2"}


def test_upload_submit_then_watch(live: LocalService, tmp_path: Path) -> None:
    X, y = blobs(n=160, seed=5)
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"X": X.tolist(), "y": y.tolist()}))
    uploaded = shardtrain("datasets", "upload", data)
    assert uploaded.exit_code == 0, uploaded.output
    dataset_id = uploaded.stdout.strip()
    assert "160 rows, 4 features, classification" in uploaded.stderr

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "dataset": dataset_id}))
    submitted = shardtrain("submit", spec)
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.stdout.strip()
    watched = shardtrain("watch", job_id)
    assert watched.exit_code == 0 and watched.stdout.startswith("succeeded"), watched.output


def test_upload_a_parquet_file_then_delete_it(live: LocalService, tmp_path: Path) -> None:
    X, y = blobs(n=160, seed=7)
    path = tmp_path / "blobs.parquet"
    pq.write_table(pa.table({**{f"f{i}": X[:, i] for i in range(4)}, "kind": y}), path)
    uploaded = shardtrain("datasets", "upload", path, "--target", "kind")
    assert uploaded.exit_code == 0, uploaded.output
    assert "160 rows, 4 features, classification" in uploaded.stderr
    dataset_id = uploaded.stdout.strip()
    deleted = shardtrain("datasets", "delete", dataset_id)
    assert deleted.exit_code == 0 and deleted.stderr.strip() == f"deleted {dataset_id}"
    again = shardtrain("datasets", "delete", dataset_id)
    assert again.exit_code == 1 and f"no dataset {dataset_id}" in again.stderr
    with Client(live.url, live.token) as client, pytest.raises(ApiError) as refused:
        client.delete_dataset(dataset_id)
    assert refused.value.status == 404


def _long_job(client: Client) -> dict[str, Any]:
    """A job that trains far longer than any test waits (it is cancelled)."""
    X, y = blobs(n=1000, seed=6)
    dataset = client.upload_dataset(to_npz({"X": X, "y": y}), name="long.npz")
    return client.submit({**SPEC, "dataset": dataset["id"], "epochs": 1000, "batch_size": 1,
                          "shards": 1})


def test_cancel_a_running_and_a_queued_job(live: LocalService) -> None:
    with Client(live.url, live.token) as client:
        running, queued = _long_job(client), _long_job(client)
        for event in client.events(running["id"]):
            if event.kind == "progress":
                break  # it runs; the one worker thread is busy with it
    cancelled = shardtrain("cancel", queued["id"])
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == "cancelled"
    requested = shardtrain("cancel", running["id"])
    assert requested.exit_code == 0 and "cancel requested" in requested.stdout
    watched = shardtrain("watch", running["id"])
    assert watched.exit_code == 1 and watched.stdout.startswith("cancelled at step ")


def test_api_errors_are_one_line_on_stderr_with_a_non_zero_exit(
        live: LocalService, spec_file: Path, tmp_path: Path) -> None:
    missing = shardtrain("weights", "0" * 32, "-o", tmp_path / "w.npz")
    assert missing.exit_code == 1 and missing.stdout == ""
    assert missing.stderr == f"error: HTTP 404: no job {'0' * 32}\n"

    refused = shardtrain("runs", SHARDTRAIN_TOKEN="not-a-token", SHARDTRAIN_URL=live.url)
    assert refused.exit_code == 1
    assert refused.stderr == "error: HTTP 401: unknown or revoked token\n"

    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({**json.loads(spec_file.read_text()), "dataset": "nope",
                                   "epochs": 0}))
    rejected = shardtrain("submit", invalid)
    assert rejected.exit_code == 1 and rejected.stderr.count("\n") == 1
    assert rejected.stderr.startswith("error: HTTP 422: body.epochs: ")

    down = shardtrain("runs", "--url", f"http://127.0.0.1:{free_port()}", "--token", "x")
    assert down.exit_code == 1 and down.stderr.startswith("error: http://127.0.0.1:")
    assert down.stderr.count("\n") == 1


def test_the_saved_token_goes_only_to_the_saved_url(live: LocalService) -> None:
    # Another server named by --url gets no token unless one is given for it.
    other = shardtrain("runs", "--url", live.url.replace("127.0.0.1", "localhost"))
    assert other.exit_code == 1 and "HTTP 401: missing bearer token" in other.stderr
