"""The join plane's Redis mailboxes."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.utils.services import redis_url
from worker.transport.join_plane import join_plane


@pytest.mark.services
def test_redis_mailboxes_wait_past_the_client_socket_timeout() -> None:
    plane = join_plane(redis_url())
    box = f"shardtrain:test:{uuid.uuid4().hex}"
    start = time.monotonic()
    assert plane.receive(box, 5.5) is None  # redis-py's socket timeout is 5 s
    assert 5.4 < time.monotonic() - start < 8
