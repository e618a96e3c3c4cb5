"""The loss history: idempotent batched writes, incremental reads, pages and streams."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from db.models import Job, Metric
from db.queries.metrics import (
    LatestMetrics,
    history_extent,
    latest_metrics,
    read_metric_page,
    read_metrics,
    stream_metric_rows,
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


def test_a_history_is_read_in_pages_up_to_a_fixed_step(
    session: Session, add_job: Callable[..., Job]
) -> None:
    job, other = add_job(), add_job()
    upsert_metrics(session, job_id=job.id,
                   rows=[(step, 1, 1.0 / step, None, None) for step in range(1, 26)])
    upsert_metrics(session, job_id=other.id, rows=[(1, 1, 9.0, None, None)])
    assert history_extent(session, job_id=job.id) == (25, 25)
    assert history_extent(session, job_id=job.id, after=20) == (5, 25)
    assert history_extent(session, job_id=job.id, after=25) == (0, None)

    page = read_metric_page(session, job_id=job.id, after=10, until=20, limit=4)
    assert [row[0] for row in page] == [11, 12, 13, 14]
    assert page[0] == (11, 1, 1.0 / 11, None, None)
    assert [row[0] for row in read_metric_page(session, job_id=job.id, after=18, until=20,
                                               limit=4)] == [19, 20]

    chunks = list(stream_metric_rows(session, job_id=job.id, after=3, until=22, chunk=4))
    assert [len(rows) for rows in chunks] == [4, 4, 4, 4, 3]
    streamed = [row for rows in chunks for row in rows]
    assert [row[0] for row in streamed] == list(range(4, 23))
    assert streamed == read_metric_page(session, job_id=job.id, after=3, until=22, limit=100)
