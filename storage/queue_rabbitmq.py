"""The ``rabbitmq`` queue adapter (WORKERS.md §7.9): not available in this build yet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from storage.errors import StorageUnavailableError

__all__ = ["open_rabbitmq_broker"]


@asynccontextmanager
async def open_rabbitmq_broker(url: str, **_: Any) -> AsyncIterator[Any]:
    raise StorageUnavailableError("the rabbitmq queue adapter is not available yet")
    yield None  # pragma: no cover
