"""``registerfunction.observe`` is read into ``entry.observe`` (OBSERVE.md §3.10, §6.3–§6.5)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from supervisor.engine.connection import Connection
from supervisor.engine.descriptor import DEFAULT_DESCRIPTOR, ObserveDescriptor, read_descriptor
from supervisor.engine.runner import build_bus
from transport import codec
from transport import messages as m

SCHEMA = {"type": "object", "properties": {"cron": {"type": "string"}}}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, DEFAULT_DESCRIPTOR),
        ({}, DEFAULT_DESCRIPTOR),
        ({"delivery": "auto"}, DEFAULT_DESCRIPTOR),
        ({"delivery": "owner"}, ObserveDescriptor(delivery="owner")),
        (
            {"delivery": "owner", "args_format": SCHEMA},
            ObserveDescriptor(delivery="owner", args_format=SCHEMA),
        ),
        ({"args_format": False}, ObserveDescriptor(args_format=False)),
        ({"legacy_trigger_type": "cron"}, ObserveDescriptor(legacy_trigger_type="cron")),
        ({"allow": False}, ObserveDescriptor(allow=False)),
        ({"allow": True, "delivery": None}, DEFAULT_DESCRIPTOR),
        ({"delivery": "owner", "unknown": 1}, ObserveDescriptor(delivery="owner")),
    ],
)
def test_valid_descriptors_are_read_field_by_field(raw: Any, expected: ObserveDescriptor) -> None:
    assert read_descriptor(raw) == (expected, [])


@pytest.mark.parametrize(
    ("raw", "expected", "warning"),
    [
        ("owner", DEFAULT_DESCRIPTOR, "observe must be an object, got str"),
        ([1], DEFAULT_DESCRIPTOR, "observe must be an object, got list"),
        (
            {"delivery": "pushy"},
            DEFAULT_DESCRIPTOR,
            "observe.delivery 'pushy' is not auto or owner",
        ),
        ({"delivery": 1}, DEFAULT_DESCRIPTOR, "observe.delivery '1' is not auto or owner"),
        (
            {"args_format": "object"},
            DEFAULT_DESCRIPTOR,
            "observe.args_format must be a JSON Schema",
        ),
        ({"legacy_trigger_type": " "}, DEFAULT_DESCRIPTOR, "observe.legacy_trigger_type must be"),
        ({"legacy_trigger_type": 3}, DEFAULT_DESCRIPTOR, "observe.legacy_trigger_type must be"),
        ({"allow": "no"}, DEFAULT_DESCRIPTOR, "observe.allow must be a boolean, got str"),
        (
            {"delivery": "owner", "allow": 0},
            ObserveDescriptor(delivery="owner"),
            "observe.allow must be a boolean, got int",
        ),
    ],
)
def test_a_malformed_field_falls_back_to_its_default_with_a_warning(
    raw: Any, expected: ObserveDescriptor, warning: str
) -> None:
    descriptor, warnings = read_descriptor(raw)
    assert descriptor == expected
    assert len(warnings) == 1 and warnings[0].startswith(warning)


def register(raw_observe: Any) -> Any:
    bus = build_bus()
    conn = Connection(kind="test")
    bus.attach(conn)
    bus.handle(
        conn,
        m.InvokeFunction(
            "engine::workers::register", {"name": "w"}, action=m.TriggerAction("void")
        ),
    )
    frame = {"type": "registerfunction", "id": "cron::tick"}
    if raw_observe is not None:
        frame["observe"] = raw_observe
    bus.handle(conn, codec.decode(orjson.dumps(frame)))
    return bus.functions[("default", "cron::tick")]


def test_the_descriptor_is_stored_on_the_function_entry() -> None:
    raw = {"delivery": "owner", "args_format": SCHEMA, "legacy_trigger_type": "cron", "allow": True}
    assert register(raw).observe == ObserveDescriptor("owner", SCHEMA, "cron", True)


def test_a_function_without_descriptor_is_auto_and_observable() -> None:
    entry = register(None)
    assert entry.observe is DEFAULT_DESCRIPTOR
    assert (entry.observe.delivery, entry.observe.allow) == ("auto", True)


def test_a_malformed_descriptor_does_not_refuse_the_function() -> None:
    assert register({"delivery": "pushy", "allow": "no"}).observe == DEFAULT_DESCRIPTOR


def test_built_ins_are_auto_and_observable() -> None:
    bus = build_bus()
    assert bus.functions[("default", "engine::functions::list")].observe is DEFAULT_DESCRIPTOR
