"""The job lease: one leader at a time, take-over of a dead one, hand-back and the watchdog."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from core.npz import from_npz
from core.spec import TrainSpec
from core.training import Trainer
from db.base import utc_now
from db.blobs import BlobStore
from db.engine import SessionFactory, session_scope
from db.models import Checkpoint, Job, Metric
from db.queries.checkpoints import get_weights, weights_key
from db.queries.leases import claim_job, release_job, requeue_stalled
from db.queries.metrics import read_metrics
from db.settings import Settings
from tests.utils.data import blobs
from tests.utils.jobs import add_dataset, add_job
from worker.leader import run_job
from worker.shutdown import SHUTTING_DOWN
from worker.watchdog import check_stalled

SPEC: dict[str, Any] = {"model": {"hidden": [8], "activation": "relu"},
                        "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 3,
                        "batch_size": 16, "shards": 2, "seed": 3}


def _submit(factory: SessionFactory, store: BlobStore, spec: dict[str, Any] = SPEC) -> str:
    with session_scope(factory) as session:
        return add_job(session, add_dataset(session, store, *blobs(n=160, seed=1,
                                                           dtype=np.float32)), spec).id


def _job(factory: SessionFactory, job_id: str) -> Job:
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_only_one_of_two_claims_wins_until_the_lease_expires(factory: SessionFactory,
                                                             store: BlobStore) -> None:
    job_id = _submit(factory, store)
    now = utc_now()
    with session_scope(factory) as session:
        assert claim_job(session, job_id=job_id, stall_timeout_s=60, now=now) == 1
    with session_scope(factory) as session:
        assert claim_job(session, job_id=job_id, stall_timeout_s=60, now=now) is None
        # The holder itself may claim again (a retry after a database outage).
        assert claim_job(session, job_id=job_id, stall_timeout_s=60, held=1, now=now) == 2
    later = now + timedelta(seconds=61)
    with session_scope(factory) as session:
        assert claim_job(session, job_id=job_id, stall_timeout_s=60, held=1, now=later) == 3
        assert not release_job(session, job_id=job_id, attempt=2)
        assert release_job(session, job_id=job_id, attempt=3)
        assert claim_job(session, job_id=job_id, stall_timeout_s=60, now=later) == 4
    job = _job(factory, job_id)
    # Started at the first claim, whatever claims came after; the lease is the last one's.
    assert job.started_at is not None and job.heartbeat_at is not None
    assert job.started_at.replace(tzinfo=None) == now.replace(tzinfo=None)
    assert job.heartbeat_at.replace(tzinfo=None) == later.replace(tzinfo=None)


def test_a_duplicate_delivery_beside_a_live_leader_is_dropped(
        factory: SessionFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        store: BlobStore) -> None:
    job_id = _submit(factory, store)
    real_step = Trainer.train_step
    duplicates: list[str] = []

    def step_with_a_duplicate(self: Trainer) -> Any:
        if self.step == 5:
            duplicates.append(run_job(job_id, factory=factory, settings=settings))
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_with_a_duplicate)
    assert run_job(job_id, factory=factory, settings=settings) == "succeeded"
    assert duplicates == ["duplicate"]
    job = _job(factory, job_id)
    assert job.attempt == 1
    with session_scope(factory) as session:
        assert session.scalar(select(func.count()).select_from(Metric).where(
            Metric.job_id == job_id)) == job.total_steps


def test_a_replaced_leader_stops_without_writing(
        factory: SessionFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        store: BlobStore) -> None:
    job_id = _submit(factory, store)
    real_step = Trainer.train_step

    def step_then_lose_the_lease(self: Trainer) -> Any:
        if self.step == 3:  # the watchdog presumed this leader dead and handed the job back
            with session_scope(factory) as session:
                assert release_job(session, job_id=job_id, attempt=1)
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_then_lose_the_lease)
    assert run_job(job_id, factory=factory, settings=settings) == "superseded"
    assert _job(factory, job_id).status == "queued"


# With local SGD (rounds of 3 steps, cut at the epochs' 8th: 3, 6, 8, ...) the state is whole
# between rounds only, so the job is handed back at the end of the round in flight.
@pytest.mark.parametrize(("sync_every", "handed_back_at"), [(1, 5), (3, 6)])
def test_a_shutting_down_worker_hands_the_job_back_at_its_step(
        factory: SessionFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        sync_every: int, handed_back_at: int, store: BlobStore) -> None:
    spec = {**SPEC, "sync_every": sync_every}
    job_id = _submit(factory, store, spec)
    real_step = Trainer.train_step
    requeued: list[str] = []

    def step_then_shut_down(self: Trainer) -> Any:
        if self.step == 4:
            SHUTTING_DOWN.set()
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_then_shut_down)
    try:
        assert run_job(job_id, factory=factory, settings=settings,
                       requeue=requeued.append) == "handed back"
    finally:
        SHUTTING_DOWN.clear()
    job = _job(factory, job_id)
    assert (job.status, job.step, requeued) == ("queued", handed_back_at, [job_id])
    with session_scope(factory) as session:
        assert session.get(Checkpoint, (job_id, handed_back_at)) is not None
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert run_job(job_id, factory=factory, settings=settings) == "succeeded"
    assert _job(factory, job_id).attempt == 2
    # Resumed from the hand-back, it ends where an unbroken run ends, every step once.
    reference = Trainer(TrainSpec.from_dict(spec), *blobs(n=160, seed=1, dtype=np.float32))
    reference.run()
    with session_scope(factory) as session:
        assert read_metrics(session, job_id=job_id)["step"] == list(range(1, 25))
        final = get_weights(session, job_id=job_id, kind="final")
        assert final is not None
        stored = from_npz(store.get(weights_key(job_id, "final")))
        for name, array in reference.weights().items():
            assert np.array_equal(stored[name], array)


def test_the_watchdog_requeues_a_stalled_job_then_fails_it(
        factory: SessionFactory, settings: Settings, store: BlobStore) -> None:
    job_id = _submit(factory, store)
    # Claims dated a second ago: fresh for a 60 s lease, stale for a 1 ms one, however fast
    # this test runs from a claim to the next check.
    second_ago = utc_now() - timedelta(seconds=1)
    with session_scope(factory) as session:
        assert claim_job(session, job_id=job_id, stall_timeout_s=60, now=second_ago) == 1
    fresh = settings.model_copy(update={"stall_timeout_s": 60.0, "max_attempts": 2})
    sent: list[str] = []
    assert check_stalled(factory, fresh, sent.append).requeued == []  # heartbeat is fresh
    stale = fresh.model_copy(update={"stall_timeout_s": 0.001})
    assert check_stalled(factory, stale, sent.append).requeued == [job_id]
    assert sent == [job_id] and _job(factory, job_id).status == "queued"
    with session_scope(factory) as session:
        assert claim_job(session, job_id=job_id, stall_timeout_s=60, now=second_ago) == 2
    report = check_stalled(factory, stale, sent.append)
    assert report.failed == [job_id] and sent == [job_id]
    job = _job(factory, job_id)
    assert (job.status, job.error_type) == ("failed", "stalled")
    assert "max_attempts=2" in (job.error_message or "")


def test_a_queued_job_whose_message_was_lost_is_sent_again_once_per_period(
        factory: SessionFactory, store: BlobStore) -> None:
    job_id = _submit(factory, store)
    later = utc_now() + timedelta(seconds=120)
    with session_scope(factory) as session:
        assert requeue_stalled(session, stall_timeout_s=60, max_attempts=5,
                               now=later).requeued == [job_id]
    with session_scope(factory) as session:
        assert requeue_stalled(session, stall_timeout_s=60, max_attempts=5,
                               now=later).requeued == []


