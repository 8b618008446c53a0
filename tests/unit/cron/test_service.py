"""The ``cron`` trigger type (WORKERS.md §8.1, §8.2) against a fake bus client on virtual time:
the block, registration errors with upstream's messages, the payload and metadata, conditions,
job keys, unregistering, and a live adapter change."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from actors.cron import parse_config
from actors.cron.jobs import JobKeys, cron_payload, job_identity, rfc3339
from actors.cron.service import CronService
from manifests.blocks import BlockError, RedisAdapter
from manifests.blocks.adapters import KvAdapter, RedisConfig
from manifests.blocks.cron import CronBlock, CronKvAdapter, CronKvConfig
from storage.kv import KeyValueStore
from storage.memory import MemoryKV
from transport.client import FunctionError, TriggerBinding

BASE = int(dt.datetime(2026, 1, 1, 2, 0, 0, tzinfo=dt.UTC).timestamp())


# -- the block -----------------------------------------------------------------------------


def test_the_block_defaults_to_in_memory_kv_locks() -> None:
    block = parse_config(None)
    assert block == CronBlock()
    adapter = block.lock_adapter()
    assert adapter == CronKvAdapter(config=CronKvConfig())
    assert adapter.settings.lock_ttl_ms == 30_000 and adapter.settings.lock_index == "cron_locks"
    assert adapter.settings.store().store_method == "in_memory"


def test_the_block_reads_both_adapters() -> None:
    kv = parse_config(
        {
            "adapter": {
                "name": "kv",
                "config": {
                    "lock_ttl_ms": 5000,
                    "lock_index": "my_locks",
                    "store_method": "file_based",
                    "file_path": "cron-data",
                },
            }
        }
    )
    settings = kv.lock_adapter()
    assert isinstance(settings, CronKvAdapter)
    assert (settings.settings.lock_ttl_ms, settings.settings.lock_index) == (5000, "my_locks")
    assert settings.settings.store().file_path == "cron-data"
    redis = parse_config({"adapter": {"name": "redis", "config": {"redis_url": "redis://r:1"}}})
    assert redis.lock_adapter() == RedisAdapter(config=RedisConfig("redis://r:1"))
    assert parse_config({"adapter": {"name": "redis"}}).lock_adapter() == RedisAdapter(
        config=RedisConfig()
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"adapter": {"name": "kv", "config": {"lock_ttl_ms": 0}}}, "lock_ttl_ms: must be >= 1"),
        ({"adapter": {"name": "kv", "config": {"lock_index": ""}}}, "lock_index"),
        ({"adapter": {"name": "redis", "config": {"lock_ttl_ms": 1}}}, "lock_ttl_ms"),
        ({"adapter": {"name": "bridge"}}, "adapter"),
        ({"schedule": "x"}, "schedule: unknown field"),
    ],
)
def test_the_block_is_strict(raw: Any, message: str) -> None:
    with pytest.raises(BlockError, match=message):
        parse_config(raw)


# -- jobs and payloads ----------------------------------------------------------------------


def binding(
    trigger_id: str = "t-1",
    config: Any = None,
    *,
    function_id: str = "fn",
    metadata: Any = None,
    namespace: str | None = None,
) -> TriggerBinding:
    if config is None:
        config = {"expression": "* * * * * *"}
    return TriggerBinding(trigger_id, "cron", function_id, config, metadata, namespace)


def test_the_job_identity_ignores_the_trigger_id() -> None:
    same = job_identity(binding("a")), job_identity(binding("b", metadata={"x": 1}))
    assert same[0] == same[1] and same[0].startswith("fn:")
    assert job_identity(binding(config={"expression": "0 * * * * *"})) != same[0]
    assert job_identity(binding(function_id="other")) != same[0]
    assert job_identity(binding(namespace="tenant")) != same[0]
    conditioned = {"expression": "* * * * * *", "condition_function_id": "c"}
    assert job_identity(binding(config=conditioned)) != same[0]


def test_identical_bindings_on_one_engine_get_numbered_keys() -> None:
    keys = JobKeys()
    first, second = keys.take(binding("a")), keys.take(binding("b"))
    assert first.endswith("#0") and second.endswith("#1")
    keys.give_back(first)
    assert keys.take(binding("c")) == first  # the lowest free number again
    assert keys.take(binding("d", {"expression": "0 * * * * *"})).endswith("#0")


def test_times_are_rfc3339_utc_as_upstream_writes_them() -> None:
    assert rfc3339(BASE) == "2026-01-01T02:00:00+00:00"
    assert rfc3339(BASE + 0.003) == "2026-01-01T02:00:00.003+00:00"
    assert rfc3339(BASE + 0.5) == "2026-01-01T02:00:00.500+00:00"
    assert rfc3339(BASE + 0.000123) == "2026-01-01T02:00:00.000123+00:00"
    assert cron_payload("t-1", BASE, BASE + 0.25) == {
        "trigger": "cron",
        "job_id": "t-1",
        "scheduled_time": "2026-01-01T02:00:00+00:00",
        "actual_time": "2026-01-01T02:00:00.250+00:00",
    }


# -- the trigger type on a fake bus ---------------------------------------------------------


class FakeClient:
    """The parts of BusClient the service uses; calls are recorded, answers scripted."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers: dict[str, Any] = {}
        self.handlers: dict[str, Any] = {}

    def register_trigger_type(self, type_id: str, description: str, **kw: Any) -> None:
        self.handlers = {"type": type_id, **kw}

    async def invoke(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str | None = None,
        metadata: Any = None,
        timeout: float = 30.0,
    ) -> Any:
        self.calls.append(
            {"function_id": function_id, "data": data, "namespace": namespace, "metadata": metadata}
        )
        answer = self.answers.get(function_id)
        if isinstance(answer, FunctionError):
            raise answer
        return answer

    def handled(self, function_id: str = "fn") -> list[dict[str, Any]]:
        return [c for c in self.calls if c["function_id"] == function_id]

    async def register(self, b: TriggerBinding) -> None:
        await self.handlers["on_register"](b)

    async def unregister(self, b: TriggerBinding) -> None:
        await self.handlers["on_unregister"](b)


def memory_stores() -> tuple[Any, list[str]]:
    opened: list[str] = []
    stores: dict[str, MemoryKV] = {}

    def open_kv(adapter: KvAdapter | RedisAdapter) -> AbstractAsyncContextManager[KeyValueStore]:
        @asynccontextmanager
        async def cm() -> AsyncIterator[KeyValueStore]:
            opened.append(adapter.name)
            yield stores.setdefault(adapter.name, MemoryKV())

        return cm()

    return open_kv, opened


@asynccontextmanager
async def service_on(
    client: FakeClient, adapter: CronKvAdapter | None = None
) -> AsyncIterator[CronService]:
    open_kv, _ = memory_stores()
    async with trio.open_nursery() as nursery:
        service = CronService(
            client,  # type: ignore[arg-type]
            nursery,
            open_kv,
            clock=lambda: BASE + trio.current_time(),
        )
        await service.use_adapter(adapter or CronKvAdapter())
        service.register()
        yield service
        nursery.cancel_scope.cancel()


async def refusal(client: FakeClient, b: TriggerBinding) -> str:
    with pytest.raises(FunctionError) as info:
        await client.register(b)
    return info.value.message


async def test_registration_errors_carry_upstreams_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = FakeClient()
    async with service_on(client):
        assert client.handlers["type"] == "cron"
        for config in ({}, {"expression": ""}, {"expression": "  "}, {"expression": 5}, "x"):
            assert await refusal(client, binding(config=config)) == "Cron expression is required"
        # The SDK's fake-socket test sends {"cron": ...}: a real engine refuses it.
        assert await refusal(client, binding(config={"cron": "* * * * * *"})) == (
            "Cron expression is required"
        )
        message = await refusal(client, binding(config={"expression": "*/5 * * * *"}))
        assert message.startswith("Invalid cron expression '*/5 * * * *': expected 6 or 7 fields")
        message = await refusal(client, binding(config={"expression": "0 0 0 * * 0"}))
        assert message.startswith("Invalid cron expression '0 0 0 * * 0': Days of Week: 0 is")
        await client.register(binding("dup"))
        assert await refusal(client, binding("dup")) == "Cron job 'dup' is already registered"


async def test_each_tick_calls_the_function_with_the_payload_and_metadata(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = FakeClient()
    async with service_on(client):
        await client.register(binding("t-1", metadata={"owner": "me"}, namespace="ns"))
        await trio.sleep(3.5)
    calls = client.handled()
    assert [c["data"]["scheduled_time"] for c in calls] == [
        "2026-01-01T02:00:01+00:00",
        "2026-01-01T02:00:02+00:00",
        "2026-01-01T02:00:03+00:00",
    ]
    assert calls[0] == {
        "function_id": "fn",
        "data": {
            "trigger": "cron",
            "job_id": "t-1",
            "scheduled_time": "2026-01-01T02:00:01+00:00",
            "actual_time": "2026-01-01T02:00:01+00:00",
        },
        "namespace": "ns",
        "metadata": {"owner": "me"},
    }


@pytest.mark.parametrize(
    ("answer", "runs"),
    [(False, 0), (True, 2), (None, 2), ("no", 2), (FunctionError("boom", "failed"), 0)],
)
async def test_the_condition_sees_the_payload_without_metadata_and_only_false_skips(
    autojump_clock: trio.testing.MockClock, answer: Any, runs: int
) -> None:
    client = FakeClient()
    client.answers["cond"] = answer
    config = {"expression": "* * * * * *", "condition_function_id": "cond"}
    async with service_on(client):
        await client.register(binding(config=config, metadata={"m": 1}))
        await trio.sleep(2.5)
    conditions = client.handled("cond")
    assert len(conditions) == 2 and conditions[0]["metadata"] is None
    assert conditions[0]["data"]["trigger"] == "cron"
    assert len(client.handled()) == runs


async def test_a_failing_handler_is_logged_and_the_job_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = FakeClient()
    client.answers["fn"] = FunctionError("invocation_failed", "boom")
    async with service_on(client):
        await client.register(binding())
        await trio.sleep(3.5)
    assert len(client.handled()) == 3


async def test_unregistering_stops_the_job(autojump_clock: trio.testing.MockClock) -> None:
    client = FakeClient()
    async with service_on(client) as service:
        b = binding()
        await client.register(b)
        await trio.sleep(2.5)
        await client.unregister(b)
        assert service.jobs == {}
        await trio.sleep(5)
        await client.unregister(b)  # twice is harmless
    assert len(client.handled()) == 2


async def test_identical_bindings_on_one_engine_both_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Upstream runs two registrations of one cron on one engine twice; so do we.
    client = FakeClient()
    async with service_on(client) as service:
        await client.register(binding("a"))
        await client.register(binding("b"))
        keys = {job.key for job in service.jobs.values()}
        assert len(keys) == 2
        await trio.sleep(2.5)
    assert sorted(c["data"]["job_id"] for c in client.handled()) == ["a", "a", "b", "b"]


async def test_an_adapter_change_moves_every_job(autojump_clock: trio.testing.MockClock) -> None:
    client = FakeClient()
    async with service_on(client) as service:
        await client.register(binding("a"))
        await trio.sleep(2.5)
        before = service.runner
        other = CronKvAdapter(config=CronKvConfig(lock_index="other_locks"))
        await service.apply_settings(
            {"adapter": {"name": "kv", "config": {"lock_index": "other_locks"}}}
        )
        assert service.adapter == other and service.runner is not before
        assert set(service.jobs) == {"a"} and before is not None and before.jobs == {}
        await service.apply_settings({"adapter": {"name": "nope"}})  # refused: nothing changes
        assert service.adapter == other
        await trio.sleep(2)
    ticks = [c["data"]["scheduled_time"][-11:-6] for c in client.handled()]
    assert ticks == ["00:01", "00:02", "00:03", "00:04"]
