"""config.yaml as the source of truth at boot: merging the entries the supervisor hands the
configuration actor (its ``entries`` block) over the persisted ones.

For each id config.yaml configures, every top-level key its block sets wins over the persisted
value; keys it does not set keep their persisted (runtime) value. A value that is not an object
on either side is replaced whole. Each persisted value thrown away is reported as a ``Discard``
so the actor can log it.

A boot is an engine start, not an actor restart: after applying seeds the actor records the
engine run (``III_ENGINE_PID`` plus that process's start time) and a digest of the seeds, and a
restart of the actor alone within the same run with the same seeds leaves runtime changes in
place. Outside a supervisor (no ``III_ENGINE_PID``) every start is a boot.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Final

import attrs
import orjson

from actors.configuration.schema import json_equal

__all__ = ["DISPLAY_NAMES", "Discard", "engine_run", "merge_seed", "seeds_digest"]

MARKER: Final = ".seeded.json"

# §1.6: the display names upstream's built-ins register; used until the owner registers.
DISPLAY_NAMES: Final = {
    "iii-http": "HTTP",
    "iii-state": "State",
    "iii-stream": "Stream",
    "iii-queue": "Queue",
    "iii-cron": "Cron",
    "iii-pubsub": "PubSub",
    "iii-observability": "Observability",
}


@attrs.frozen
class Discard:
    """A persisted value config.yaml overrode; ``field`` ``None`` means the whole value."""

    field: str | None
    persisted: Any
    config_yaml: Any

    def to_log(self) -> dict[str, Any]:
        return {"field": self.field, "persisted": self.persisted, "config_yaml": self.config_yaml}


def merge_seed(stored: Any, seed: Any) -> tuple[Any, list[Discard]]:
    """The value after config.yaml's ``seed`` is applied over ``stored``, and what was lost."""
    if isinstance(stored, dict) and isinstance(seed, dict):
        merged = dict(stored)
        discards = []
        for key, value in seed.items():
            if key in stored and not json_equal(stored[key], value):
                discards.append(Discard(key, stored[key], value))
            merged[key] = value
        return merged, discards
    if stored is None or json_equal(stored, seed):
        return seed, []
    return seed, [Discard(None, stored, seed)]


def seeds_digest(seeds: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(seeds, option=orjson.OPT_SORT_KEYS)).hexdigest()


def engine_run(environ: dict[str, str] | None = None) -> str | None:
    """Identity of the supervisor run that spawned us (pid and start time), if any."""
    env = os.environ if environ is None else environ
    pid = env.get("III_ENGINE_PID")
    if not pid or not pid.isdigit():
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the comm field
    except (OSError, IndexError):
        start = "?"
    return f"{pid}:{start}"
