"""structlog setup: readable lines on a TTY, one JSON object per line otherwise.

On the console a worker's output is one line, ``[worker] text``; a worker that logs JSON (our
actors, structlog users) has its record shown as its event and fields, not as ``record={...}``.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Fields of a worker's JSON record that the console line already shows, or that only repeat
# what the supervisor knows (its own timestamp, the actor's name is the worker's).
_SHOWN = ("event", "level", "timestamp", "actor", "logger")
_OUTPUT_META = ("worker", "stream", "pid", "record", "line", "truncated")


def flatten_worker_output(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``worker.output`` as ``[worker] <line>`` (or ``[worker] <record's event> k=v ...``)."""
    if event_dict.get("event") != "worker.output":
        return event_dict
    worker = event_dict.get("worker", "?")
    record = event_dict.get("record")
    out: dict[str, Any] = {
        k: v for k, v in event_dict.items() if k not in _OUTPUT_META and k != "event"
    }
    if isinstance(record, dict):
        text = str(record.get("event", ""))
        out.update({k: v for k, v in record.items() if k not in _SHOWN})
    else:
        text = str(event_dict.get("line", ""))
        if event_dict.get("truncated"):
            text += " …"
    out["event"] = f"[{worker}] {text}"
    return out


def _console_time(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # A person at a terminal reads local wall-clock time; milliseconds order the lines.
    event_dict["timestamp"] = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    return event_dict


def configure_logging(level: str | None = None, *, json: bool | None = None) -> None:
    level_name = (level or os.environ.get("III_LOG_LEVEL") or "info").upper()
    numeric = getattr(logging, level_name, logging.INFO)
    if json is None:
        json = not sys.stderr.isatty()
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if json:
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors += [
            _console_time,
            flatten_worker_output,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), pad_event=0),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(name)s: %(message)s")
    # Libraries that log every frame at DEBUG would cost more than the routing itself.
    for noisy in ("trio-websocket", "pika", "redis"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
