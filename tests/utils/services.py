"""The machine's real Redis and PostgreSQL: skipped when absent, unless CI requires them."""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("SHARDTRAIN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require(service: str, error: Exception) -> None:
    message = f"{service} unreachable: {error}"
    if os.environ.get("SHARDTRAIN_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        require("Redis", error)
    return REDIS_URL
