"""The one Redis client of a worker process, shared by the join plane and the presence set.

A client holds a pool of connections: the ranks of each job, and each presence update, reuse
them instead of opening one (about 2 ms each, on the leader's and each rank's way to the
first step).
"""

from __future__ import annotations

from functools import lru_cache

import redis

# A reply slower than this is an outage; the join plane's waits (BLPOP) are cut shorter.
SOCKET_TIMEOUT_S = 5.0


@lru_cache(maxsize=4)
def redis_client(url: str) -> redis.Redis:
    """The client of this process for ``url``."""
    # hiredis (a dependency) parses multi-megabyte replies several times faster than the
    # pure-Python parser; redis-py picks it up by itself.
    return redis.Redis.from_url(url, socket_keepalive=True, socket_timeout=SOCKET_TIMEOUT_S)
