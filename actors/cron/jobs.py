"""What a ``cron`` binding becomes (WORKERS.md §8.2): its config checked with upstream's messages,
the key every engine knows the job by, and the payload its function receives.

**The job key** (a documented difference, §16 item 18). Upstream locks on the trigger id, but an
SDK worker draws a random trigger id per ``register_trigger``, so the same cron registered on
two engines never shares a lock and runs on both. Here a job is named by what it does: its
function, namespace and trigger config (expression, condition) — ``<function id>:<digest>`` —
plus ``#n`` numbering the identical bindings of one engine, so two identical registrations on
one engine still run twice per tick, as upstream, while the same registration on N engines
sharing a Redis lock store runs once per tick. The trigger id stays the payload's ``job_id``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Final

import orjson

from actors.cron.expression import CronExpression, CronExpressionError, parse_expression
from transport.client import FunctionError, TriggerBinding

__all__ = [
    "TRIGGER_CONFIG_SCHEMA",
    "TRIGGER_TYPE",
    "JobKeys",
    "cron_payload",
    "expression_of",
    "job_identity",
    "rfc3339",
]

TRIGGER_TYPE: Final = "cron"
INVALID_CONFIG: Final = "invalid_trigger_config"

TRIGGER_CONFIG_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "description": "second minute hour day-of-month month day-of-week [year], UTC; "
            "day of week 1-7 with 1 = Sunday, or names (MON-FRI)",
        },
        "condition_function_id": {
            "type": "string",
            "description": "Called with the payload before each run; false skips the run",
        },
    },
    "required": ["expression"],
}


def expression_of(binding: TriggerBinding) -> CronExpression:
    """The binding's parsed expression; a ``FunctionError`` with upstream's message if not."""
    config = binding.config if isinstance(binding.config, dict) else {}
    text = config.get("expression")
    if not isinstance(text, str) or not text.strip():
        raise FunctionError(INVALID_CONFIG, "Cron expression is required")
    try:
        return parse_expression(text)
    except CronExpressionError as exc:
        raise FunctionError(INVALID_CONFIG, str(exc)) from exc


def job_identity(binding: TriggerBinding) -> str:
    """``<function id>:<digest of namespace, function and config>``: the same on every engine."""
    canonical = orjson.dumps(
        {
            "namespace": binding.namespace,
            "function_id": binding.function_id,
            "config": binding.config,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return f"{binding.function_id}:{hashlib.sha256(canonical).hexdigest()[:16]}"


class JobKeys:
    """Hands out job keys: the identity, numbered among this engine's identical bindings."""

    def __init__(self) -> None:
        self._taken: dict[str, set[int]] = {}

    def take(self, binding: TriggerBinding) -> str:
        identity = job_identity(binding)
        taken = self._taken.setdefault(identity, set())
        number = next(n for n in range(len(taken) + 1) if n not in taken)
        taken.add(number)
        return f"{identity}#{number}"

    def give_back(self, key: str) -> None:
        identity, _, number = key.rpartition("#")
        taken = self._taken.get(identity)
        if taken is not None:
            taken.discard(int(number))
            if not taken:
                del self._taken[identity]


def rfc3339(timestamp: float) -> str:
    """UTC RFC 3339 as upstream writes it (chrono's ``to_rfc3339``): no fraction for a whole
    second, else milliseconds when exact, else microseconds."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    micros = moment.microsecond
    if micros == 0:
        spec = "seconds"
    elif micros % 1000 == 0:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    return moment.isoformat(timespec=spec)


def cron_payload(job_id: str, tick: int, actual: float) -> dict[str, Any]:
    """What the function receives (§8.2, [compat])."""
    return {
        "trigger": TRIGGER_TYPE,
        "job_id": job_id,
        "scheduled_time": rfc3339(tick),
        "actual_time": rfc3339(actual),
    }
