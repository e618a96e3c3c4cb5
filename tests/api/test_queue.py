"""The message the API sends is the one the workers consume: task name, JSON, args."""

from __future__ import annotations

import json
from typing import Any

from api.queue import broker_reachable, celery_client, enqueue_job
from db.settings import Settings
from db.task_names import TRAIN_JOB


def test_enqueue_sends_the_train_task_by_name_as_json(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="memory://api-test-queue")
    enqueue_job("job-1", settings=settings)
    with celery_client(settings.broker_url).connection_for_read() as connection:
        queue = connection.SimpleQueue("celery")
        try:
            message = queue.get(timeout=2)
        finally:
            queue.close()
    assert message.headers["task"] == TRAIN_JOB == "shardtrain.train_job"
    assert message.content_type == "application/json"
    args, kwargs, _ = json.loads(message.body)
    assert (args, kwargs) == (["job-1"], {})
    message.ack()


def test_broker_reachable(tmp_path: Any) -> None:
    assert broker_reachable(1.0, settings=Settings(data_dir=tmp_path, broker_url="memory://"))
    # Port 1 on the loopback interface: nothing listens there, so the connection is refused.
    closed = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0")
    assert not broker_reachable(1.0, settings=closed)
