"""Small trio helpers shared by the adapters.

``owned_nursery`` hosts an adapter's background tasks for the lifetime of its context manager.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["owned_nursery"]


@asynccontextmanager
async def owned_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery cancelled when the body exits.

    Background tasks must not raise (they log instead); an error of the body then comes out
    unwrapped instead of inside a one-element ``ExceptionGroup``, as callers expect.
    """
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
