"""The idle-worker set that sizes a job's ranks, driven by Celery's own signals."""

from __future__ import annotations

from types import SimpleNamespace

import fakeredis
import pytest

from worker import presence


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    fake = fakeredis.FakeRedis()
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


def test_without_redis_the_count_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "_redis", lambda: None)
    presence._ready(sender=SimpleNamespace(hostname="w1@host"))
    assert presence.idle_workers() is None
