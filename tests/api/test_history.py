"""GET /v1/jobs/{id}/metrics: the downsampling rule, and whole histories streamed in pages."""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.services import metrics as history_service
from api.services.metrics import Downsampler, downsample
from db.engine import SessionFactory, session_scope
from db.queries.metrics import MetricColumns, MetricRow, read_metrics, upsert_metrics
from tests.utils.api import submitted, upload
from tests.utils.data import blobs


def columns(train_loss: list[float | None]) -> MetricColumns:
    n = len(train_loss)
    return MetricColumns(
        step=list(range(n)),
        epoch=[step // 100 for step in range(n)],
        train_loss=train_loss,
        val_loss=[None] * n,
        val_accuracy=[None] * n,
    )


def test_downsample_keeps_first_last_and_extremes() -> None:
    loss: list[float | None] = [1.0 / (1 + s) for s in range(1000)]
    loss[400] = 50.0  # a spike
    loss[700] = -1.0  # a dip
    loss[300] = None  # a diverged step
    kept = downsample(columns(loss), 40)

    assert len(kept["step"]) <= 40
    assert kept["step"][0] == 0 and kept["step"][-1] == 999
    assert 400 in kept["step"] and 700 in kept["step"]
    assert kept["step"] == sorted(kept["step"])
    assert all(kept["train_loss"][i] == loss[step] for i, step in enumerate(kept["step"]))
    for name in ("epoch", "train_loss", "val_loss", "val_accuracy"):
        assert len(kept[name]) == len(kept["step"]), name  # type: ignore[literal-required]


def test_downsample_leaves_short_histories_alone() -> None:
    history = columns([3.0, 2.0, 1.0])
    assert downsample(history, 3) == history
    assert downsample(history, 2)["step"] == [0, 2]


def test_downsample_needs_room_for_first_and_last() -> None:
    with pytest.raises(ValueError, match="max_points"):
        downsample(columns([1.0, 2.0, 3.0]), 1)


def kept_by_the_rule(loss: list[float | None], max_points: int) -> list[int]:
    """The positions the rule keeps, computed on the whole history at once with numpy."""
    n = len(loss)
    if n <= max_points:
        return list(range(n))
    values = np.array([np.nan if v is None else v for v in loss])
    edges = np.linspace(1, n - 1, (max_points - 2) // 2 + 1).astype(np.int64)
    keep = {0, n - 1}
    for start, stop in itertools.pairwise(edges.tolist()):
        bucket = values[start:stop]
        if stop > start and not np.isnan(bucket).all():
            keep |= {start + int(np.nanargmin(bucket)), start + int(np.nanargmax(bucket))}
    return sorted(keep)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 1001, 5000])
@pytest.mark.parametrize("max_points", [2, 3, 10, 81, 1000])
def test_the_streamed_downsampler_keeps_what_the_rule_keeps(n: int, max_points: int) -> None:
    rng = np.random.default_rng([n, max_points])
    # Few distinct values, so ties are common; some steps without a value.
    loss: list[float | None] = [None if rng.random() < 0.05 else float(v)
                                for v in rng.integers(0, 20, size=n)]
    rows: list[MetricRow] = [(step, 1, value, None, None) for step, value in enumerate(loss)]
    sampler = Downsampler(n, max_points)
    # Fed in pages of random lengths: a bucket spans pages, and a page spans buckets.
    cuts = sorted(rng.choice(np.arange(1, n), size=min(n - 1, 7), replace=False)) if n else []
    for page in np.split(np.arange(n), cuts):
        sampler.feed(rows[page[0]:page[-1] + 1] if len(page) else [])
    kept = sampler.result()
    assert kept["step"] == kept_by_the_rule(loss, max_points)
    assert kept["train_loss"] == [loss[i] for i in kept["step"]]
    assert len(kept["step"]) <= max(max_points, min(n, 2))


@pytest.fixture
def long_job(client: TestClient, auth: dict[str, str], session_factory: SessionFactory
             ) -> tuple[str, list[MetricRow]]:
    """A job with 2,503 recorded steps, validation values every 100."""
    job_id = submitted(client, auth, upload(client, auth, *blobs(n=120))["id"])["id"]
    rows: list[MetricRow] = [
        (step, (step - 1) // 100 + 1, 1.0 / step + (5.0 if step == 1234 else 0.0),
         0.5 / step if step % 100 == 0 else None, 0.25 if step % 100 == 0 else None)
        for step in range(1, 2504)]
    with session_scope(session_factory) as session:
        upsert_metrics(session, job_id=job_id, rows=rows)
    return job_id, rows


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 100 rows and spools that spill to disk past 1 KB: every part of the stream
    runs on a short history."""
    monkeypatch.setattr(history_service, "PAGE_ROWS", 100)
    monkeypatch.setattr(history_service, "SPOOL_BYTES", 1024)


@pytest.mark.usefixtures("small_pages")
def test_a_whole_history_streams_as_columns_and_as_csv(
        client: TestClient, auth: dict[str, str], long_job: tuple[str, list[MetricRow]],
        session_factory: SessionFactory) -> None:
    job_id, rows = long_job
    url = f"/v1/jobs/{job_id}/metrics"
    whole = client.get(url, headers=auth)
    assert whole.headers["content-type"] == "application/json"
    with session_scope(session_factory) as session:
        assert whole.json() == read_metrics(session, job_id=job_id)
    assert whole.json()["train_loss"][1233] == rows[1233][2]

    since = client.get(url, params={"since_step": 2450}, headers=auth).json()
    assert since["step"] == list(range(2451, 2504))
    assert client.get(url, params={"since_step": 2503}, headers=auth).json() == {
        name: [] for name in history_service.COLUMNS}

    text = client.get(url, params={"format": "csv", "since_step": 2398}, headers=auth).text
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == list(history_service.COLUMNS)
    assert table[1] == ["2399", "24", repr(1.0 / 2399), "", ""]
    assert table[2] == ["2400", "24", repr(1.0 / 2400), repr(0.5 / 2400), "0.25"]
    assert len(table) == 1 + 2503 - 2398


def test_a_downsampled_history_keeps_the_spike(
        client: TestClient, auth: dict[str, str], long_job: tuple[str, list[MetricRow]]) -> None:
    job_id, rows = long_job
    url = f"/v1/jobs/{job_id}/metrics"
    small: dict[str, Any] = client.get(url, params={"max_points": 80}, headers=auth).json()
    loss: list[float | None] = [row[2] for row in rows]
    assert small["step"] == [i + 1 for i in kept_by_the_rule(loss, 80)]
    assert 1234 in small["step"]
    as_csv = client.get(url, params={"max_points": 80, "format": "csv"}, headers=auth).text
    assert [int(line.split(",")[0]) for line in as_csv.splitlines()[1:]] == small["step"]
