"""The ``iii-queue`` config block (WORKERS.md §7.2): the broker adapter and the named queues.

A queue named ``default`` always exists (all defaults unless declared). How a named queue's
``max_retries`` maps onto the core's one counting rule (``storage.queue_core``): it is the total
number of attempts, as upstream's builtin adapter reads it (§16 item 5; ``0`` still means one
attempt) — on every adapter here, RabbitMQ included.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import attrs

from manifests.blocks.adapters import BridgeAdapter, RedisAdapter
from manifests.blocks.strict import (
    CONVERTER,
    IntRange,
    Invalid,
    Issue,
    NonEmptyStr,
    NonNegativeInt,
    PositiveInt,
    validate,
    wrong_type,
)

__all__ = [
    "DEFAULTS",
    "DEFAULT_QUEUE",
    "BuiltinQueueAdapter",
    "BuiltinQueueConfig",
    "QueueAdapter",
    "QueueBlock",
    "QueueConfig",
    "QueueConfigs",
    "RabbitMqAdapter",
    "RabbitMqConfig",
]

DEFAULT_QUEUE: Final = "default"

Priority = Annotated[int, IntRange(1, 255)]
Seconds = Annotated[int, IntRange(0, 3600)]


@attrs.frozen
class QueueConfig:
    """One named queue (``queue_configs.<name>``)."""

    max_retries: NonNegativeInt = 3  # total attempts (module docstring); 0 → one attempt
    concurrency: PositiveInt = 10
    type: Literal["standard", "fifo"] = "standard"
    message_group_field: NonEmptyStr | None = None
    backoff_ms: NonNegativeInt = 1000
    poll_interval_ms: PositiveInt = 100
    max_priority: Priority | None = None  # RabbitMQ only
    priority_field: str | None = None  # RabbitMQ only

    @property
    def max_attempts(self) -> int:
        return max(self.max_retries, 1)

    @property
    def fifo(self) -> bool:
        return self.type == "fifo"


QueueConfigs = dict[str, QueueConfig]


@attrs.frozen
class BuiltinQueueConfig:
    """The builtin broker (§7.2): jobs in this process, in memory or in a journal on disk."""

    store_method: Literal["in_memory", "file_based"] = "in_memory"
    file_path: str = "queue_store"  # a directory; relative: the actor's data directory
    save_interval_ms: NonNegativeInt = 5000  # fsync: interval — how often the journal is synced
    # ours: "always" syncs each enqueue before it is acknowledged (grouped), "never" leaves it
    # to the OS. Any mode survives a kill of the process; only "always" survives a power cut.
    fsync: Literal["always", "interval", "never"] = "interval"


@attrs.frozen
class BuiltinQueueAdapter:
    name: Literal["builtin"] = "builtin"
    config: BuiltinQueueConfig | None = None

    @property
    def settings(self) -> BuiltinQueueConfig:
        return self.config or BuiltinQueueConfig()


@attrs.frozen
class RabbitMqConfig:
    amqp_url: str = "amqp://localhost:5672"
    max_attempts: PositiveInt = 3  # durable topics' default attempts (subscribers may override)
    prefetch_count: PositiveInt = 10
    queue_mode: Literal["standard", "fifo"] = "standard"
    priority_field: str | None = None
    queue_type: Literal["classic", "quorum"] = "classic"  # ours: x-queue-type of every queue
    heartbeat: Seconds = 30  # ours: AMQP heartbeat in seconds (0: off)


@attrs.frozen
class RabbitMqAdapter:
    name: Literal["rabbitmq"] = "rabbitmq"
    config: RabbitMqConfig | None = None

    @property
    def settings(self) -> RabbitMqConfig:
        return self.config or RabbitMqConfig()


QueueAdapter = BuiltinQueueAdapter | RedisAdapter | RabbitMqAdapter | BridgeAdapter


@attrs.frozen
class QueueBlock:
    adapter: QueueAdapter | None = None
    queue_configs: QueueConfigs = attrs.Factory(dict)

    def broker_adapter(self) -> QueueAdapter:
        """The adapter to open, defaults filled in (none: the in-memory builtin broker)."""
        adapter = self.adapter or BuiltinQueueAdapter()
        if isinstance(adapter, BuiltinQueueAdapter):
            return attrs.evolve(adapter, config=adapter.settings)
        if isinstance(adapter, RabbitMqAdapter):
            return attrs.evolve(adapter, config=adapter.settings)
        if isinstance(adapter, RedisAdapter):
            return attrs.evolve(adapter, config=adapter.settings)
        return adapter

    def queues(self) -> dict[str, QueueConfig]:
        """Every named queue, ``default`` included (an explicit entry wins)."""
        return {DEFAULT_QUEUE: QueueConfig(), **self.queue_configs}


def _structure_queue_configs(value: object, _: object) -> QueueConfigs:
    """Each entry by ``QueueConfig``, then the cross-field rules of §7.2, issues at their path."""
    if not isinstance(value, dict):
        raise wrong_type(dict, value)
    out: dict[str, QueueConfig] = {}
    issues: list[Issue] = []
    for name, raw in value.items():
        config, found = validate(QueueConfig, raw, (str(name),))
        issues.extend(found)
        if config is None:
            continue
        if config.fifo and not config.message_group_field:
            message = f"Queue '{name}' is of type 'fifo' but 'message_group_field' is not set"
            issues.append(Issue((str(name), "message_group_field"), message, message))
            continue
        out[str(name)] = config
    if issues:
        raise Invalid(issues)
    return out


CONVERTER.register_structure_hook_func(lambda tp: tp == QueueConfigs, _structure_queue_configs)

DEFAULTS: Final[dict[str, Any]] = {
    "adapter": {"name": "builtin", "config": {"store_method": "in_memory"}},
    "queue_configs": {DEFAULT_QUEUE: {"max_retries": 3, "concurrency": 10}},
}
