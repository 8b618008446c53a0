"""Fixtures for the storage integration tests: the Redis server and per-test key namespaces.

Redis tests skip when 127.0.0.1:6379 does not answer, unless ``III_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

REDIS_URL = os.environ.get("III_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_problem(url: str) -> str | None:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except redis.exceptions.RedisError as exc:
        return f"Redis not reachable at {url}: {exc}"
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a live Redis; skips (or fails with III_REQUIRE_SERVICES=1) when there is none."""
    problem = _redis_problem(REDIS_URL)
    if problem:
        if os.environ.get("III_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{problem} (III_REQUIRE_SERVICES=1)")
        pytest.skip(problem)
    return REDIS_URL


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A namespace no other test run uses; every key under it is deleted afterwards."""
    namespace = f"iii-test-{uuid.uuid4().hex[:12]}"
    yield namespace
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
