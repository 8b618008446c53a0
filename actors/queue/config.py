"""The ``iii-queue`` actor's config parsing: its block is ``manifests.blocks.queue.QueueBlock``
(WORKERS.md §7.2), the class the supervisor validates config.yaml with; and the mapping from
the block and from a ``durable:subscriber`` trigger's ``queue_config`` to the broker's terms."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from actors.runtime import EXIT_CONFIG, ActorExit, resolve_path
from manifests.blocks.adapters import RedisAdapter
from manifests.blocks.queue import (
    BuiltinQueueAdapter,
    QueueAdapter,
    QueueBlock,
    QueueConfig,
    RabbitMqAdapter,
)
from manifests.blocks.strict import parse
from storage.queue_broker import QueueSpec
from storage.queue_core import QueueSettings
from storage.queue_factory import (
    BuiltinFile,
    BuiltinMemory,
    QueueBackend,
    RabbitMqServer,
    RedisPublisher,
)

__all__ = ["BLOCK", "broker_backend", "named_queue_spec", "parse_config", "subscriber_settings"]

BLOCK: Final = QueueBlock


def parse_config(raw: Any) -> QueueBlock:
    """The block, strictly (``None`` → all defaults); raises ``BlockError`` naming the fields."""
    return parse(BLOCK, raw)


def broker_backend(adapter: QueueAdapter, data_dir: Path) -> QueueBackend:
    if isinstance(adapter, BuiltinQueueAdapter):
        config = adapter.settings
        if config.store_method == "in_memory":
            return BuiltinMemory()
        return BuiltinFile(
            resolve_path(config.file_path, data_dir),
            fsync=config.fsync,
            save_interval_ms=config.save_interval_ms,
        )
    if isinstance(adapter, RabbitMqAdapter):
        rabbit = adapter.settings
        return RabbitMqServer(
            rabbit.amqp_url,
            queue_type=rabbit.queue_type,
            prefetch_count=rabbit.prefetch_count,
            heartbeat=rabbit.heartbeat,
        )
    if isinstance(adapter, RedisAdapter):
        return RedisPublisher(adapter.settings.redis_url)
    raise ActorExit(
        EXIT_CONFIG,
        "invalid configuration",
        error="adapter 'bridge' is not supported by iii-supervisor yet",
    )


def named_queue_spec(name: str, config: QueueConfig) -> QueueSpec:
    """A named queue: ``max_retries`` is its total attempts (manifests.blocks.queue)."""
    return QueueSpec(
        name=name,
        settings=QueueSettings(
            max_attempts=config.max_attempts,
            backoff_ms=config.backoff_ms,
            # §7.5: upstream runs a fifo named queue one job at a time; with groups held by the
            # core, ``concurrency`` groups may run at once and each group stays in order.
            concurrency=config.concurrency,
            fifo=config.fifo,
        ),
        max_priority=config.max_priority,
        priority_field=config.priority_field,
    )


def _int(raw: Any, key: str) -> int | None:
    value = raw.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def subscriber_settings(queue_config: Any, default_attempts: int = 3) -> QueueSettings:
    """A ``durable:subscriber``'s ``queue_config`` (§7.4): ``maxRetries: N`` is N retries, so
    N + 1 attempts; keys of the wrong JSON type are ignored, as upstream does."""
    raw = queue_config if isinstance(queue_config, dict) else {}
    retries = _int(raw, "maxRetries")
    concurrency = _int(raw, "concurrency")
    backoff = _int(raw, "backoffDelayMs")
    fifo = raw.get("type") == "fifo"
    return QueueSettings(
        max_attempts=retries + 1 if retries is not None and retries >= 0 else default_attempts,
        backoff_ms=backoff if backoff is not None and backoff >= 0 else 1000,
        concurrency=1 if fifo else concurrency if concurrency and concurrency > 0 else 10,
        fifo=fifo,
    )
