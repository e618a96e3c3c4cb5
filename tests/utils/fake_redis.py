"""One in-memory Redis server (fakeredis) for the tests that need Redis's behaviour but not
its process; mailbox names carry a fresh job id, so tests never read each other's."""

from __future__ import annotations

import fakeredis

from worker.transport.join_plane import JoinPlane

SERVER = fakeredis.FakeServer()
# Any Redis URL: a leader listens for its ranks at its address on the route to it.
FAKE_REDIS_URL = "redis://127.0.0.1:6379/15"


def fake_redis() -> fakeredis.FakeRedis:
    """A client of the shared server."""
    return fakeredis.FakeRedis(server=SERVER)


def fake_join_plane() -> JoinPlane:
    return JoinPlane(fake_redis())
