"""A job's loss history: batched idempotent writes and reads, whole, in pages or streamed."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TypedDict

from sqlalchemy import Float, Integer, Select, and_, bindparam, delete, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased

from db.base import finite_or_none
from db.models import Checkpoint, Job, Metric
from db.queries.dml import insert_for

MetricRow = tuple[int, int, float | None, float | None, float | None]
"""``(step, epoch, train_loss, val_loss, val_accuracy)``."""


class MetricColumns(TypedDict):
    """The history as parallel lists, one entry per recorded step, ordered by step."""

    step: list[int]
    epoch: list[int]
    train_loss: list[float | None]
    val_loss: list[float | None]
    val_accuracy: list[float | None]


def upsert_metrics(session: Session, *, job_id: str, rows: Sequence[MetricRow]) -> None:
    """Write ``rows`` in one statement; a step written before takes the new values.

    So a leader that replays steps after a crash neither duplicates nor loses one. Non-finite
    values are stored as None (see ``finite_or_none``).
    """
    if not rows:
        return
    insert = insert_for(session, Metric)
    parameters = None
    if session.get_bind().dialect.name == "postgresql":
        # The rows as one array per column, unnested by the server: one statement and one
        # round trip. A list of parameter sets would be a pipeline in psycopg, and a leader
        # frozen inside one (SIGSTOP, a stopped host) leaves its session active with the
        # rows locked: idle_in_transaction_session_timeout (``db.engine``) never ends it,
        # and the leader that takes over the job would wait on those rows forever.
        steps, epochs, *losses = (list(column) for column in zip(*rows, strict=True))
        arrays = func.unnest(
            bindparam("steps", steps, ARRAY(Integer)), bindparam("epochs", epochs, ARRAY(Integer)),
            *(bindparam(name, [finite_or_none(v) for v in values], ARRAY(Float))
              for name, values in zip(("train", "val", "accuracy"), losses, strict=True))
        ).table_valued("step", "epoch", "train_loss", "val_loss", "val_accuracy").render_derived()
        insert = insert.from_select(
            ["job_id", "step", "epoch", "train_loss", "val_loss", "val_accuracy"],
            select(literal(job_id), *arrays.c))
    else:
        parameters = [
            {"job_id": job_id, "step": step, "epoch": epoch,
             "train_loss": finite_or_none(t), "val_loss": finite_or_none(v),
             "val_accuracy": finite_or_none(a)}
            for step, epoch, t, v, a in rows
        ]
    statement = insert.on_conflict_do_update(
        index_elements=[Metric.job_id, Metric.step],
        set_={
            "epoch": insert.excluded.epoch,
            "train_loss": insert.excluded.train_loss,
            "val_loss": insert.excluded.val_loss,
            "val_accuracy": insert.excluded.val_accuracy,
        },
    )
    # SQLite: one statement with a list of parameter sets, which the driver batches and which
    # no limit on bound parameters constrains. render_nulls: the ORM would otherwise leave out
    # None values and split the batch wherever the set of keys changes.
    session.execute(statement, parameters, execution_options={"render_nulls": True})


def drop_metrics_after(session: Session, *, job_id: str, step: int) -> None:
    """Forget the steps after ``step``: those an earlier attempt recorded past the checkpoint
    that a job ended at (cancelled or failed after a crash), which its weights do not hold."""
    session.execute(delete(Metric).where(Metric.job_id == job_id, Metric.step > step))


def rewind_to_checkpoint(session: Session, job: Job) -> None:
    """Set a job that no leader holds back to its latest checkpoint: its progress, and its
    history without the steps after it, which the leader that recorded them died before
    checkpointing. The next attempt would have resumed there; a cancelled job ends there."""
    step = session.scalar(select(func.max(Checkpoint.step)).where(
        Checkpoint.job_id == job.id)) or 0
    drop_metrics_after(session, job_id=job.id, step=step)
    epoch = session.scalar(select(Metric.epoch).where(Metric.job_id == job.id,
                                                      Metric.step == step))
    job.rewind_to(step, epoch or 0)


def _rows_after(job_id: str, after: int | None, until: int | None
                ) -> Select[int, int, float | None, float | None, float | None]:
    statement = select(Metric.step, Metric.epoch, Metric.train_loss, Metric.val_loss,
                       Metric.val_accuracy).where(Metric.job_id == job_id)
    if after is not None:
        statement = statement.where(Metric.step > after)
    if until is not None:
        statement = statement.where(Metric.step <= until)
    return statement.order_by(Metric.step)


def read_metrics(session: Session, *, job_id: str, since_step: int | None = None,
                 limit: int | None = None) -> MetricColumns:
    """The job's history, or only the steps after ``since_step`` for incremental polling;
    ``limit`` keeps the first that many steps (a bounded read for a stream that catches up)."""
    statement = _rows_after(job_id, since_step, None)
    if limit is not None:
        statement = statement.limit(limit)
    columns = MetricColumns(step=[], epoch=[], train_loss=[], val_loss=[], val_accuracy=[])
    for step, epoch, train_loss, val_loss, val_accuracy in session.connection().execute(
            statement):
        columns["step"].append(step)
        columns["epoch"].append(epoch)
        columns["train_loss"].append(train_loss)
        columns["val_loss"].append(val_loss)
        columns["val_accuracy"].append(val_accuracy)
    return columns


def history_extent(session: Session, *, job_id: str,
                   after: int | None = None) -> tuple[int, int | None]:
    """How many steps the job has recorded after step ``after``, and the last of them."""
    statement = select(func.count(), func.max(Metric.step)).where(Metric.job_id == job_id)
    if after is not None:
        statement = statement.where(Metric.step > after)
    count, last = session.execute(statement).one()
    return int(count), last


# The bulk reads below run on the session's connection (Core) rather than through the ORM:
# the ORM's result handling took twice as long over a million rows.


def read_metric_page(session: Session, *, job_id: str, after: int | None, until: int | None,
                     limit: int) -> list[MetricRow]:
    """At most ``limit`` rows after step ``after`` and up to step ``until``, in step order:
    one page of a history read page by page, each page in a short transaction."""
    result = session.connection().execute(_rows_after(job_id, after, until).limit(limit))
    return [tuple(row) for row in result.fetchall()]  # type: ignore[misc]


def stream_metric_rows(session: Session, *, job_id: str, after: int | None = None,
                       until: int | None = None, chunk: int = 10_000
                       ) -> Iterator[list[MetricRow]]:
    """The rows after ``after`` up to ``until`` in step order, in lists of ``chunk`` rows
    fetched one list at a time (a server-side cursor on PostgreSQL), so that reading a long
    history holds one chunk."""
    result = session.connection().execution_options(yield_per=chunk).execute(
        _rows_after(job_id, after, until))
    for rows in result.partitions():
        yield [tuple(row) for row in rows]  # type: ignore[misc]


@dataclass(frozen=True)
class LatestMetrics:
    """A job's last recorded step, with the validation values of the last epoch end up to it
    (None before the first epoch ends)."""

    step: int
    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None


def latest_metrics(session: Session, *, job_ids: Collection[str]) -> dict[str, LatestMetrics]:
    """``LatestMetrics`` of each job in ``job_ids`` that has recorded a step.

    One query whatever the number of jobs, reading at most two rows per job off the ends of
    its indexes, so a page of runs does not cost a query per run.
    """
    if not job_ids:
        return {}
    return {
        job_id: LatestMetrics(step=step, epoch=epoch, train_loss=train_loss,
                              val_loss=val_loss, val_accuracy=val_accuracy)
        for job_id, step, epoch, train_loss, val_loss, val_accuracy
        in session.execute(_LATEST, {"job_ids": list(job_ids)})
    }


def _latest_statement() -> Select[str, int, int, float | None, float | None, float | None]:
    """Per job, its last metrics row, joined with its last row that has validation values.

    Each highest step is a correlated max(), not a GROUP BY over the jobs' rows: the backends
    read it off the end of an index (the primary key, or ``ix_metrics_validated`` for the
    validated rows), so a read costs the same at step 10 as at step 200,000."""
    last, validated = aliased(Metric), aliased(Metric)
    highest = select(func.max(Metric.step)).where(Metric.job_id == Job.id).correlate(Job)
    validated_step = highest.where(Metric.val_loss.is_not(None))
    return (
        select(Job.id, last.step, last.epoch, last.train_loss, validated.val_loss,
               validated.val_accuracy)
        .select_from(Job)
        .join(last, and_(last.job_id == Job.id, last.step == highest.scalar_subquery()))
        .outerjoin(validated, and_(validated.job_id == Job.id,
                                   validated.step == validated_step.scalar_subquery()))
        .where(Job.id.in_(bindparam("job_ids", expanding=True)))
    )


# Built once: constructing it takes about 1 ms of Python, twice what running it takes, and it
# runs on every job read, page of runs and event-stream tick.
_LATEST = _latest_statement()
