"""The ``cron`` trigger type over the current lock adapter: bindings become jobs, jobs fire their
function (condition first) with the §8.2 payload, and the adapter can be swapped live (§8.1).

A swap opens the new backend first (a failure keeps everything as it was), then moves every
job to a runner on it (their runs in progress stop and release their run locks) and only then
closes the old backend. A tick falling inside the swap may be skipped, as upstream says.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final

import structlog
import trio

from actors.cron.config import parse_config
from actors.cron.jobs import (
    TRIGGER_CONFIG_SCHEMA,
    TRIGGER_TYPE,
    JobKeys,
    cron_payload,
    expression_of,
    rfc3339,
)
from actors.cron.runner import CronJob, CronRunner
from actors.cron.schedule import Fire
from actors.runtime.adoption import swap_adapter
from actors.runtime.fanout import passes_condition, run_handler
from manifests.blocks.adapters import KvAdapter, RedisAdapter
from manifests.blocks.cron import REDIS_LOCK_TTL_MS, CronAdapter, CronKvAdapter
from storage import KeyValueStore
from storage.locks import KvLockStore, LockStore, open_redis_locks
from transport.client import BusClient, FunctionError, TriggerBinding

__all__ = ["STORE_NAME", "CronService", "OpenKv"]

log = structlog.get_logger("iii-cron")

STORE_NAME: Final = "cron"  # the kv files' name, the Redis hashes' prefix
REDIS_LOCK_PREFIX: Final = "cron_lock:"  # upstream's keys: cron_lock:<job>
PROCESS_LOCAL_WARNING: Final = (
    "iii-cron kv adapter: locks are process-local; cron jobs may run on every engine instance"
)

OpenKv = Callable[[KvAdapter | RedisAdapter], AbstractAsyncContextManager[KeyValueStore]]


class CronService:
    """The jobs of the live ``cron`` bindings, on a runner over the current adapter."""

    def __init__(
        self,
        client: BusClient,
        nursery: trio.Nursery,
        open_kv: OpenKv,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self._nursery = nursery
        self._open_kv = open_kv
        self._clock = clock
        self.adapter: CronAdapter | None = None
        self.runner: CronRunner | None = None
        self._backend_scope: trio.CancelScope | None = None
        self._keys = JobKeys()
        self._lock = trio.Lock()  # bindings and swaps, one at a time

    def register(self) -> None:
        self.client.register_trigger_type(
            TRIGGER_TYPE,
            "Fires the function on a cron schedule (seconds first, UTC)",
            on_register=self._on_register,
            on_unregister=self._on_unregister,
            trigger_request_format=TRIGGER_CONFIG_SCHEMA,
        )

    @property
    def jobs(self) -> dict[str, CronJob]:
        return {} if self.runner is None else dict(self.runner.jobs)

    # -- the adapter -------------------------------------------------------------------------

    async def use_adapter(self, adapter: CronAdapter) -> None:
        """Open ``adapter`` and move every job onto it; raises (old one kept) on failure."""
        async with self._lock:
            scope = trio.CancelScope()
            runner: CronRunner = await self._nursery.start(self._hold, adapter, scope)
            old_runner, old_scope = self.runner, self._backend_scope
            if old_runner is not None:
                for job_id in list(old_runner.jobs):
                    job = old_runner.remove(job_id)
                    if job is None:
                        continue
                    try:
                        await runner.add(job)
                    except KeyError:  # cannot happen: the new runner starts empty
                        log.exception("job lost in the adapter change", job_id=job.id)
            self.runner, self.adapter, self._backend_scope = runner, adapter, scope
            if old_scope is not None:
                old_scope.cancel()

    async def _hold(
        self,
        adapter: CronAdapter,
        scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[CronRunner] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            async with self._backend(adapter) as (store, locks, ttl_ms):
                runner = CronRunner(
                    store=store,
                    locks=locks,
                    lock_ttl_ms=ttl_ms,
                    invoke=self._invoke,
                    clock=self._clock,
                )
                async with trio.open_nursery() as nursery:
                    await nursery.start(runner.run)
                    task_status.started(runner)
                    await trio.sleep_forever()

    @asynccontextmanager
    async def _backend(
        self, adapter: CronAdapter
    ) -> AsyncIterator[tuple[KeyValueStore, LockStore, int]]:
        if isinstance(adapter, CronKvAdapter):
            settings = adapter.settings
            log.warning(PROCESS_LOCAL_WARNING)
            async with self._open_kv(KvAdapter(config=settings.store())) as store:
                locks = KvLockStore(store, index=settings.lock_index)
                await locks.sweep()
                yield store, locks, settings.lock_ttl_ms
        else:
            url = adapter.settings.redis_url
            async with (
                self._open_kv(adapter) as store,
                open_redis_locks(url, prefix=REDIS_LOCK_PREFIX) as redis_locks,
            ):
                yield store, redis_locks, REDIS_LOCK_TTL_MS

    async def apply_settings(self, value: Any) -> None:
        """Adopt the configuration worker's value (the adapter is hot-swappable, §8.1)."""
        await swap_adapter(
            "iii-cron", lambda: parse_config(value).lock_adapter(), self.adapter, self.use_adapter
        )

    # -- the cron trigger type -----------------------------------------------------------------

    async def _on_register(self, binding: TriggerBinding) -> None:
        expression = expression_of(binding)
        async with self._lock:
            assert self.runner is not None
            if binding.id in self.runner.jobs:
                raise FunctionError(
                    "trigger_registration_failed", f"Cron job '{binding.id}' is already registered"
                )
            job = CronJob(binding.id, self._keys.take(binding), expression, binding)
            pending = await self.runner.add(job)
        log.info(
            "cron job scheduled",
            job_id=job.id,
            function_id=binding.function_id,
            expression=expression.source,
            next=None if pending is None else rfc3339(pending),
        )

    async def _on_unregister(self, binding: TriggerBinding) -> None:
        async with self._lock:
            job = None if self.runner is None else self.runner.remove(binding.id)
            if job is not None:
                self._keys.give_back(job.key)
                log.info("cron job stopped", job_id=job.id)

    async def _invoke(self, job: CronJob, fire: Fire, actual: float) -> None:
        """Condition, then handler, each awaited (§8.3: the run goes to completion)."""
        binding = job.binding
        payload = cron_payload(job.id, fire.tick, actual)
        if await passes_condition(self.client, binding, payload, job_id=job.id):
            await run_handler(self.client, binding, payload, job_id=job.id)
