"""The idle-worker set that sizes a job's ranks, driven by Celery's own signals."""

from __future__ import annotations

from types import SimpleNamespace

import fakeredis
import pytest

from tests.utils.fake_redis import fake_redis
from worker import presence


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    fake = fake_redis()
    fake.delete(presence.IDLE_WORKERS)
    monkeypatch.setattr(presence, "_redis", lambda: fake)
    return fake


def _task(name: str, hostname: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, request=SimpleNamespace(hostname=hostname))


def test_workers_are_idle_between_our_tasks(client: fakeredis.FakeRedis) -> None:
    for hostname in ("w1@host", "w2@host"):
        presence._ready(sender=SimpleNamespace(hostname=hostname))
    assert presence.idle_workers() == 2
    presence._busy(task=_task("shardtrain.train_job", "w1@host"))
    assert presence.idle_workers() == 1
    presence._busy(task=_task("celery.ping", "w2@host"))  # not ours: no change
    assert presence.idle_workers() == 1
    presence._idle(task=_task("shardtrain.train_job", "w1@host"))
    presence._gone(sender=SimpleNamespace(hostname="w2@host"))
    assert presence.idle_workers() == 1


def test_a_worker_whose_pool_process_was_killed_is_idle_again_when_it_restarts(
        client: fakeredis.FakeRedis) -> None:
    presence._ready(sender=SimpleNamespace(hostname="w1@host"))
    presence._busy(task=_task("shardtrain.train_rank", "w1@host"))
    # SIGKILLed mid-task: no task_postrun; the worker starts a new pool process.
    assert presence.idle_workers() == 0
    presence._pool_process_started(sender="w1@host")
    assert client.smembers(presence.IDLE_WORKERS) == {b"w1@host"}


def test_without_redis_the_count_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "_redis", lambda: None)
    presence._ready(sender=SimpleNamespace(hostname="w1@host"))
    assert presence.idle_workers() is None
