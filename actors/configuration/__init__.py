"""The ``configuration`` worker (WORKERS.md §2); the actor lives in
``actors.configuration.actor``, whose docstring describes it."""

# The actor itself lives in ``actors.configuration.actor``; importing this package stays
# cheap because other actors import ``actors.configuration.adoption`` at every (re)start.
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from actors.configuration import actor

    return getattr(actor, name)
