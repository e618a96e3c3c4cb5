"""The loss history: idempotent batched writes, incremental reads, and downsampling."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from db.models import Job, Metric
from db.queries.metrics import (
    LatestMetrics,
    MetricColumns,
    downsample,
    latest_metrics,
    read_metrics,
    upsert_metrics,
)


@contextmanager
def statements_run(engine: Engine) -> Iterator[list[tuple[str, bool]]]:
    """The statements run on ``engine`` inside the block: their SQL, and whether each is an
    executemany."""
    statements: list[tuple[str, bool]] = []

    def record(*args: Any) -> None:
        statements.append((args[2], args[5]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_replayed_batch_neither_duplicates_nor_loses_a_step(
    session: Session, add_job: Callable[..., Job]
) -> None:
    job = add_job()
    first = [(s, 0, 1.0 / (s + 1), None, None) for s in range(10)]
    upsert_metrics(session, job_id=job.id, rows=first)
    # A leader that crashed after step 9 resumes from the checkpoint at step 5 and replays.
    replay = [(s, 1, 100.0 + s, 0.5, 0.75) for s in range(5, 15)]
    upsert_metrics(session, job_id=job.id, rows=replay)

    history = read_metrics(session, job_id=job.id)
    assert history["step"] == list(range(15))
    assert history["train_loss"][:5] == [1.0 / (s + 1) for s in range(5)]
    assert history["train_loss"][5:] == [100.0 + s for s in range(5, 15)]
    assert history["epoch"] == [0] * 5 + [1] * 10
    assert history["val_loss"] == [None] * 5 + [0.5] * 10
    assert history["val_accuracy"] == [None] * 5 + [0.75] * 10
    count = select(func.count()).select_from(Metric).where(Metric.job_id == job.id)
    assert session.execute(count).scalar_one() == 15


def test_a_batch_is_one_statement_even_with_validation_values_on_some_rows(
    session: Session, add_job: Callable[..., Job], engine: Engine
) -> None:
    job = add_job()
    rows = [(s, 0, 1.0, 0.5 if s % 10 == 9 else math.nan, None) for s in range(50)]
    with statements_run(engine) as statements:
        upsert_metrics(session, job_id=job.id, rows=rows)
    assert len(statements) == 1 and "INSERT INTO metrics" in statements[0][0]
    # On PostgreSQL never a list of parameter sets: psycopg pipelines those, and a leader
    # frozen inside a pipeline keeps its session active with the rows locked.
    assert not statements[0][1] or engine.dialect.name == "sqlite"
    history = read_metrics(session, job_id=job.id)
    assert history["step"] == list(range(50))
    assert history["val_loss"][9] == 0.5 and history["val_loss"][10] is None


def test_non_finite_losses_are_stored_as_null(
    session: Session, add_job: Callable[..., Job]
) -> None:
    job = add_job()
    upsert_metrics(
        session,
        job_id=job.id,
        rows=[(1, 0, math.nan, math.inf, 0.5), (2, 0, -math.inf, None, math.nan)],
    )
    history = read_metrics(session, job_id=job.id)
    assert history["train_loss"] == [None, None]
    assert history["val_loss"] == [None, None]
    assert history["val_accuracy"] == [0.5, None]


def test_read_since_step_returns_only_later_steps_of_that_job(
    session: Session, add_job: Callable[..., Job]
) -> None:
    job, other = add_job(), add_job()
    upsert_metrics(session, job_id=job.id, rows=[(s, 0, float(s), None, None) for s in range(6)])
    upsert_metrics(session, job_id=other.id, rows=[(7, 0, 7.0, None, None)])
    upsert_metrics(session, job_id=job.id, rows=[])
    assert read_metrics(session, job_id=job.id, since_step=3)["step"] == [4, 5]
    assert read_metrics(session, job_id=job.id, since_step=5)["step"] == []
    assert read_metrics(session, job_id=job.id)["step"] == list(range(6))


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


def test_latest_metrics_of_several_jobs_at_once(
    session: Session, add_job: Callable[..., Job], engine: Engine
) -> None:
    job, other, silent = add_job(), add_job(), add_job()
    rows = [
        (s, s // 5, 1.0 / s, 0.5 / s if s % 5 == 0 else None, 0.1 * s if s % 5 == 0 else None)
        for s in range(1, 13)
    ]
    upsert_metrics(session, job_id=job.id, rows=rows)
    upsert_metrics(session, job_id=other.id, rows=[(1, 0, 2.0, None, None)])
    session.flush()  # nothing left for an autoflush to write while the statements are counted
    with statements_run(engine) as statements:
        latest = latest_metrics(session, job_ids=[job.id, other.id, silent.id])
    assert len(statements) == 1  # one query for the whole page of jobs
    assert set(latest) == {job.id, other.id}  # a job without metrics has no entry
    assert latest[job.id] == LatestMetrics(
        step=12, epoch=2, train_loss=1.0 / 12, val_loss=0.05, val_accuracy=1.0
    )
    assert latest[other.id] == LatestMetrics(
        step=1, epoch=0, train_loss=2.0, val_loss=None, val_accuracy=None
    )
    assert latest_metrics(session, job_ids=[]) == {}
