"""A job run by the worker's code against a real (SQLite) database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from core.checkpoint import model_from_state
from core.model import Model
from core.npz import from_npz
from core.spec import TrainSpec
from core.training import Trainer
from db.base import utc_now
from db.blobs import BlobStore
from db.engine import SessionFactory, session_scope
from db.models import Checkpoint, Job, Metric
from db.queries.checkpoints import get_weights, read_checkpoint, weights_key
from db.queries.leases import claim_job, release_job, requeue_stalled
from db.queries.metrics import read_metrics
from db.settings import Settings
from tests.utils.data import blobs
from tests.utils.jobs import add_dataset, add_job
from worker import claim
from worker.leader import DatabaseUnavailable, run_job
from worker.records import Batch, Records, RecordsFactory

SPEC: dict[str, Any] = {"model": {"hidden": [8], "activation": "relu"},
                        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
                        "epochs": 3, "batch_size": 16, "shards": 4, "seed": 3,
                        "validation_fraction": 0.2}


def _submit(factory: SessionFactory, store: BlobStore, spec: dict[str, Any],
            **data: Any) -> str:
    X, y = blobs(n=160, seed=1, dtype=np.float32) if not data else (data["X"], data["y"])
    with session_scope(factory) as session:
        return add_job(session, add_dataset(session, store, X, y), spec).id


def _reference(spec: dict[str, Any]) -> Trainer:
    X, y = blobs(n=160, seed=1, dtype=np.float32)
    trainer = Trainer(TrainSpec.from_dict(spec), X, y)
    trainer.run()
    return trainer


def _failing_flushes(fault: Callable[[Batch], None]) -> RecordsFactory:
    """``Records`` whose progress writes first call ``fault``, which may raise."""

    class Failing(Records):
        def flush(self, batch: Batch, state: tuple[int, bytes] | None) -> bool:
            fault(batch)
            return super().flush(batch, state)

    return Failing


def _outage_past(step: int) -> RecordsFactory:
    """``Records`` whose progress writes meet a database outage once the job is past
    ``step``."""

    def outage(batch: Batch) -> None:
        if batch.step is not None and batch.step > step:
            raise OperationalError("COMMIT", {}, Exception("database went away"))

    return _failing_flushes(outage)


def test_a_job_trains_to_the_reference_weights_with_every_step_once(
        factory: SessionFactory, settings: Settings, store: BlobStore) -> None:
    job_id = _submit(factory, store, SPEC)
    assert run_job(job_id, factory=factory, settings=settings) == "succeeded"
    reference = _reference(SPEC)
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "succeeded" and job.attempt == 1
        assert job.step == job.total_steps == reference.step == 24
        metrics = read_metrics(session, job_id=job_id)
        assert metrics["step"] == list(range(1, 25))
        assert [v is not None for v in metrics["val_loss"]] == [s % 8 == 0 for s in range(1, 25)]
        final = get_weights(session, job_id=job_id, kind="final")
        assert final is not None
        stored = from_npz(store.get(weights_key(job_id, "final")))
        for name, array in reference.weights().items():
            assert np.array_equal(stored[name], array)
        assert job.final_val_accuracy == pytest.approx(
            reference.job.evaluate(reference.params)[1])
        best = get_weights(session, job_id=job_id, kind="best")
        assert best is not None and best.step == job.best_step
        initial = session.get(Checkpoint, (job_id, 0))
        assert initial is not None
        start = Trainer(TrainSpec.from_dict(SPEC), *blobs(n=160, seed=1, dtype=np.float32))
        np.testing.assert_array_equal(model_from_state(read_checkpoint(store, initial)).params,
                                      start.params)
        # The last step's state is the final weights: no checkpoint repeats it.
        assert session.get(Checkpoint, (job_id, job.total_steps)) is None
    # A redelivered message for a finished job changes nothing.
    assert run_job(job_id, factory=factory, settings=settings) == "succeeded"


def test_the_steps_go_on_while_a_write_runs(factory: SessionFactory, settings: Settings,
                                            monkeypatch: pytest.MonkeyPatch,
                                            store: BlobStore) -> None:
    job_id = _submit(factory, store, SPEC)
    real_step = Trainer.train_step
    reached = threading.Condition()
    steps, writes = [0], [0]

    def counted_step(self: Trainer) -> Any:
        event = real_step(self)
        with reached:
            steps[0] = self.step
            reached.notify_all()
        return event

    def first_after_more_steps(batch: Batch) -> None:
        # The first write (at step 7) ends only once the loop has gone 3 steps past it: a loop
        # that waited for its writes would never get there.
        writes[0] += 1
        if writes[0] == 1:
            with reached:
                assert reached.wait_for(lambda: steps[0] >= 10, timeout=10)

    monkeypatch.setattr(Trainer, "train_step", counted_step)
    assert run_job(job_id, factory=factory, settings=settings,
                   writes=_failing_flushes(first_after_more_steps)) == "succeeded"
    with session_scope(factory) as session:
        assert read_metrics(session, job_id=job_id)["step"] == list(range(1, 25))


def test_a_crash_mid_job_resumes_from_the_checkpoint_to_the_same_weights(
        factory: SessionFactory, settings: Settings, store: BlobStore) -> None:
    job_id = _submit(factory, store, SPEC)
    with pytest.raises(DatabaseUnavailable) as outage:
        run_job(job_id, factory=factory, settings=settings, writes=_outage_past(14))
    assert outage.value.lease == 1
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "running"
        assert session.scalar(select(func.max(Checkpoint.step)).where(
            Checkpoint.job_id == job_id)) == 14

    # Its lease is still live: another delivery is refused, the retry holding it is not.
    assert run_job(job_id, factory=factory, settings=settings) == "duplicate"
    assert run_job(job_id, factory=factory, settings=settings,
                   lease=outage.value.lease) == "succeeded"
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.attempt == 2
        assert read_metrics(session, job_id=job_id)["step"] == list(range(1, 25))
        assert session.scalar(select(func.count()).select_from(Metric).where(
            Metric.job_id == job_id)) == 24
        final = get_weights(session, job_id=job_id, kind="final")
        assert final is not None
        stored = from_npz(store.get(weights_key(job_id, "final")))
        assert np.array_equal(stored["W1"], _reference(SPEC).weights()["W1"])


def test_cancel_stops_once_a_write_has_read_it_and_keeps_history_and_checkpoint(
        factory: SessionFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        store: BlobStore) -> None:
    job_id = _submit(factory, store, SPEC)
    real_step = Trainer.train_step

    def cancelling_step(self: Trainer) -> Any:
        if self.step == 10:
            with session_scope(factory) as session:
                job = session.get(Job, job_id)
                assert job is not None
                job.request_cancel()
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", cancelling_step)
    assert run_job(job_id, factory=factory, settings=settings) == "cancelled"
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "cancelled"
        # Writes run beside the steps (every 7 here): the one submitted at step 14, the first
        # after the request, has returned by the next one's submission, at step 21.
        assert 10 <= job.step <= 21
        assert read_metrics(session, job_id=job_id)["step"] == list(range(1, job.step + 1))
        assert session.get(Checkpoint, (job_id, job.step)) is not None
        assert session.get(Checkpoint, (job_id, 0)) is not None


def test_a_job_cancelled_after_its_leader_died_ends_at_its_last_checkpoint(
        factory: SessionFactory, settings: Settings, store: BlobStore) -> None:
    # Checkpoint 0 alone: the leader that stops records steps 1..14 past it.
    settings = settings.model_copy(update={"checkpoint_interval_s": 3600.0})
    job_id = _submit(factory, store, SPEC)
    with pytest.raises(DatabaseUnavailable):
        run_job(job_id, factory=factory, settings=settings, writes=_outage_past(14))
    with session_scope(factory) as session:
        assert read_metrics(session, job_id=job_id)["step"] == list(range(1, 15))
        job = session.get(Job, job_id)
        assert job is not None and job.step == 14
        job.request_cancel()  # running: its leader would stop at its next write
    # It never comes back: the watchdog hands the job back, and its delivery cancels it.
    with session_scope(factory) as session:
        later = utc_now() + timedelta(seconds=settings.stall_timeout_s + 1)
        assert requeue_stalled(session, stall_timeout_s=settings.stall_timeout_s,
                               max_attempts=settings.max_attempts, now=later).requeued == [job_id]
    assert run_job(job_id, factory=factory, settings=settings) == "cancelled"
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "cancelled"
        assert (job.step, job.epoch) == (0, 0)
        assert read_metrics(session, job_id=job_id)["step"] == []


def test_a_delivery_with_nothing_to_do_says_why_and_changes_nothing(
        factory: SessionFactory, settings: Settings, store: BlobStore) -> None:
    assert run_job("no-such-job", factory=factory, settings=settings) == "missing"
    finished = _submit(factory, store, {**SPEC, "epochs": 1})
    assert run_job(finished, factory=factory, settings=settings) == "succeeded"
    cancelled = _submit(factory, store, SPEC)
    with session_scope(factory) as session:
        job = session.get(Job, cancelled)
        assert job is not None
        job.request_cancel()  # while queued: cancelled when its message is delivered
    for _ in range(2):  # and again on a redelivery of either
        assert run_job(finished, factory=factory, settings=settings) == "succeeded"
        assert run_job(cancelled, factory=factory, settings=settings) == "cancelled"
    with session_scope(factory) as session:
        done = session.get(Job, finished)
        stopped = session.get(Job, cancelled)
        assert done is not None and stopped is not None
        assert (done.attempt, stopped.attempt, stopped.started_at) == (1, 0, None)


def test_divergence_fails_with_its_type_and_keeps_the_last_finite_checkpoint(
        factory: SessionFactory, settings: Settings, store: BlobStore) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)) * 100
    y = rng.normal(size=64)
    spec = {"model": {"hidden": [16], "output": "linear"}, "loss": "mse",
            "optimizer": {"lr": 1000.0}, "epochs": 20, "batch_size": 8,
            "validation_fraction": 0.0}
    job_id = _submit(factory, store, spec, X=X, y=y)
    assert run_job(job_id, factory=factory, settings=settings) == "failed"
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.error_type == "diverged"
        assert job.error_message is not None and job.error_message.startswith("diverged at step")
        last = session.scalar(select(func.max(Checkpoint.step)).where(Checkpoint.job_id == job_id))
        assert last is not None
        checkpoint = session.get(Checkpoint, (job_id, last))
        assert checkpoint is not None
        assert np.all(np.isfinite(model_from_state(read_checkpoint(store, checkpoint)).params))
        # Its initial state too, though it failed before its first progress write.
        assert session.get(Checkpoint, (job_id, 0)) is not None


def test_unusable_data_fails_as_invalid_data(factory: SessionFactory, settings: Settings,
                                             store: BlobStore) -> None:
    spec = {**SPEC, "shards": 1, "init": "no-such-job"}
    job_id = _submit(factory, store, spec)
    assert run_job(job_id, factory=factory, settings=settings) == "failed"
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.error_type == "invalid_data"
        assert "no-such-job" in (job.error_message or "")


@pytest.mark.parametrize("where", ["planning", "preparing"])
def test_a_fault_before_training_fails_the_job_instead_of_leaving_it_running(
        factory: SessionFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        where: str, store: BlobStore) -> None:
    """Not a ValueError, so not bad data: a fault of the service's own, which a retry would
    meet again."""
    def overflow(*_: Any, **__: Any) -> None:
        raise OverflowError("Python int too large to convert to C long")

    monkeypatch.setattr(claim, "planned_network" if where == "planning" else "load_input",
                        overflow)
    job_id = _submit(factory, store, SPEC)
    assert run_job(job_id, factory=factory, settings=settings) == "failed"
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "failed" and job.error_type == "internal"
        assert job.error_message == "OverflowError: Python int too large to convert to C long"
        assert job.finished_at is not None


@pytest.mark.parametrize("where", ["planning", "preparing"])
def test_an_outage_before_training_is_retried_not_failed(
        factory: SessionFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        where: str, store: BlobStore) -> None:
    def outage(*_: Any, **__: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(claim, "planned_network" if where == "planning" else "load_input",
                        outage)
    job_id = _submit(factory, store, SPEC)
    with pytest.raises(DatabaseUnavailable):
        run_job(job_id, factory=factory, settings=settings)
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status in ("queued", "running") and job.error_type is None


def test_init_starts_from_an_earlier_jobs_final_weights(factory: SessionFactory,
                                                        settings: Settings,
                                                        store: BlobStore) -> None:
    first = _submit(factory, store, SPEC)
    run_job(first, factory=factory, settings=settings)
    second = _submit(factory, store, {**SPEC, "epochs": 1, "init": first})
    assert run_job(second, factory=factory, settings=settings) == "succeeded"
    with session_scope(factory) as session:
        start = session.get(Checkpoint, (second, 0))
        final = get_weights(session, job_id=first, kind="final")
        assert start is not None and final is not None
        np.testing.assert_array_equal(model_from_state(read_checkpoint(store, start)).params,
                                      Model.from_npz(store.get(weights_key(first, "final"))).params)


def test_a_session_ended_by_the_server_is_an_outage_retried_with_the_lease(
        factory: SessionFactory, settings: Settings, store: BlobStore) -> None:
    from sqlalchemy.exc import InternalError

    job_id = _submit(factory, store, SPEC)
    def ended(batch: Batch) -> None:  # as PostgreSQL reports a session it ended
        raise InternalError("COMMIT", {}, Exception("idle-in-transaction timeout"),
                            connection_invalidated=True)

    with pytest.raises(DatabaseUnavailable) as outage:
        run_job(job_id, factory=factory, settings=settings, writes=_failing_flushes(ended))
    assert outage.value.lease == 1
    assert run_job(job_id, factory=factory, settings=settings,
                   lease=outage.value.lease) == "succeeded"


def test_a_leader_cut_off_while_replaced_stops_instead_of_retrying(
        factory: SessionFactory, settings: Settings, store: BlobStore) -> None:
    from sqlalchemy.exc import InternalError

    job_id = _submit(factory, store, SPEC)

    def replaced_then_cut_off(batch: Batch) -> None:
        # Meanwhile the watchdog handed the job to another leader (attempt 2).
        with session_scope(factory) as session:
            assert release_job(session, job_id=job_id, attempt=1)
            assert claim_job(session, job_id=job_id, stall_timeout_s=600) == 2
        raise InternalError("COMMIT", {}, Exception("idle-in-transaction timeout"),
                            connection_invalidated=True)

    assert run_job(job_id, factory=factory, settings=settings,
                   writes=_failing_flushes(replaced_then_cut_off)) == "superseded"
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.status, job.attempt) == ("running", 2)
