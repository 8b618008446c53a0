"""The engine half of the supervisor: one bus and its listeners, in one nursery.

``run_engine`` binds every configured ``iii-worker-manager`` listener (several listeners
share one bus) and reports the running ``Engine`` through ``task_status`` so the child
manager can hand local actor links to the same bus.
"""

from __future__ import annotations

import os

import attrs
import structlog
import trio

from supervisor.config.model import EngineConfig
from supervisor.engine.bus import Bus
from supervisor.engine.listener import Listener

log = structlog.get_logger(__name__)


@attrs.define(eq=False)
class Engine:
    bus: Bus
    listeners: list[Listener]
    ports: list[int]

    @property
    def port(self) -> int:
        return self.ports[0]


def namespace_grace_ms(cfg: EngineConfig) -> int:
    env = os.environ.get("III_NAMESPACE_GRACE_MS")
    if env and env.strip().isdigit():
        return int(env)
    return cfg.namespace_grace_ms


async def run_engine(
    cfg: EngineConfig, *, task_status: trio.TaskStatus[Engine] = trio.TASK_STATUS_IGNORED
) -> None:
    bus = Bus(namespace_grace_ms=namespace_grace_ms(cfg))
    listeners = [Listener(bus, lc) for lc in cfg.listeners]
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(bus.run)
            ports = [await nursery.start(lst.run) for lst in listeners]
            task_status.started(Engine(bus=bus, listeners=listeners, ports=ports))
            await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await bus.shutdown()
