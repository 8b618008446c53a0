"""The actor's console output under the block's ``level`` (WORKERS.md §10.1, swap tier).

``level`` filters every line the actor writes, the ``engine::log::*`` echoes included (``trace``
is structlog's ``debug``); unset, the process keeps ``III_LOG_LEVEL``. Stored logs are not
filtered by it (``engine::logs::list`` has ``severity_min`` for that). ``format`` is not applied
here: actors hand the supervisor JSON lines, which it renders in its own ``--log-format``.
"""

from __future__ import annotations

import logging
import os
from typing import Final

import structlog

__all__ = ["apply_level", "level_number"]

_NAMES: Final = {"trace": "DEBUG", "debug": "DEBUG", "info": "INFO", "warn": "WARNING"}


def level_number(level: str | None) -> int:
    """The logging level of ``level`` (None: ``III_LOG_LEVEL``, else info)."""
    name = (level or os.environ.get("III_LOG_LEVEL") or "info").lower()
    return logging.getLevelNamesMapping().get(_NAMES.get(name, name.upper()), logging.INFO)


def apply_level(level: str | None) -> None:
    """Filter the process's structlog output at ``level`` from now on (the processors and
    the output stay the runtime's)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level_number(level)))
