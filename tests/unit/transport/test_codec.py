"""The codec: every message class round-trips; bad frames fail with a one-line reason."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from transport import codec
from transport import messages as m

INV = str(uuid.uuid4())

SAMPLES: list[Any] = [
    m.WorkerRegistered(worker_id=INV, reattach_token=INV),
    m.WorkerRegistered(worker_id=INV, features=["observe.v1"]),
    m.Reattach(previous_worker_id=INV, reattach_token=INV),
    m.RegisterFunction(
        id="orders::create",
        description="Create",
        request_format={"type": "object"},
        response_format={"type": "string"},
        metadata={"public": True},
    ),
    m.RegisterFunction(id="x", invocation={"url": "https://e.example/x", "method": "POST"}),
    m.UnregisterFunction(id="orders::create"),
    m.RegistrationRejected(
        code="FUNCTION_NAMESPACE_CONFLICT",
        namespace="default",
        owner_worker_id=INV,
        function_id="f",
    ),
    m.RegistrationRejected(
        code="WORKER_NAMESPACE_CONFLICT", namespace="ns", owner_worker_id=INV, worker_name="w"
    ),
    m.RegisterTriggerType(id="webhook", description="Hooks", trigger_request_format={"a": 1}),
    m.RegisterTriggerType(id="webhook", description="Hooks", namespace="team"),
    m.UnregisterTriggerType(id="webhook"),
    m.RegisterTrigger(id=INV, trigger_type="http", function_id="f", config={"api_path": "a"}),
    m.RegisterTrigger(
        id=INV,
        trigger_type="t",
        function_id="f",
        config=None,
        metadata={"k": 1},
        namespace="a",
        trigger_namespace="b",
    ),
    m.UnregisterTrigger(id=INV, trigger_type="http"),
    m.TriggerRegistrationResult(id=INV, trigger_type="t", function_id="f"),
    m.TriggerRegistrationResult(
        id=INV, trigger_type="t", function_id="f", error=m.ErrorBody("c", "msg")
    ),
    m.InvokeFunction(function_id="f", data={"a": [1, 2]}, invocation_id=INV),
    m.InvokeFunction(function_id="f", data=None, action=m.TriggerAction(type="void")),
    m.InvokeFunction(
        function_id="f",
        data=3,
        invocation_id=INV,
        action=m.TriggerAction(type="enqueue", queue="q"),
        namespace="ns",
        metadata={"tenant": "a"},
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        baggage="a=b",
    ),
    m.InvocationResult(invocation_id=INV, function_id="f", result={"ok": True}),
    m.InvocationResult(
        invocation_id=INV, function_id="f", error=m.ErrorBody("invocation_failed", "x", "tb")
    ),
    m.RegisterService(id="orders", name="Orders", description="d", parent_service_id="p"),
    m.Ping(),
    m.Pong(),
    m.SupPing(seq=7),
    m.SupPong(seq=7),
    m.InvokeFunction(
        function_id="f",
        data={},
        invocation_id=INV,
        caller={"worker_name": "iii-engine", "function_id": "g", "invocation_id": INV},
        observe_depth=2,
        activation={"observer_id": "o", "activation_id": INV},
    ),
    m.Observe(
        id="o",
        source={"function_id": "f", "filters": {"input.n": {"$gte": 2}}},
        target={"function_id": "g"},
        metadata={"m": 1},
        max_fires=1,
        expires_in_ms=300,
        max_in_flight=4,
    ),
    m.Unobserve(id="o"),
    m.ObserveResult(id="o", state="error", error=m.ErrorBody("SELF_TARGET", "x"), warnings=["w"]),
    m.ObserverStateChanged(id="o", state="active", fires=0),
    m.FunctionRegistered(
        id="f", namespace="default", revision=0, local_dispatch=False, observers=[]
    ),
    m.ObserverAdded(function_id="f", namespace="default", revision=1, observer={"id": "o"}),
    m.ObserverRemoved(function_id="f", namespace="default", revision=2, id="o"),
    m.ObserverAck(function_id="f", id="o", revision=1, error=m.ErrorBody("NOPE", "no")),
    m.InvocationsObserved(items=[{"function_id": "f", "output": None}]),
    m.LocalInvocationStats(window_ms=10000, functions=[], dropped_reports=[]),
]


def test_every_message_class_has_a_sample() -> None:
    sampled = {type(s) for s in SAMPLES}
    assert sampled | {m.ErrorFrame} == set(m.ALL_MESSAGES)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda s: type(s).__name__)
def test_round_trip(msg: Any) -> None:
    wire = codec.encode(msg)
    assert orjson.loads(wire)["type"] == msg.TAG
    assert codec.decode(wire) == msg
    assert codec.decode(wire.decode()) == msg


def test_none_fields_are_omitted_like_the_sdks_do() -> None:
    wire = orjson.loads(codec.encode(m.InvocationResult(invocation_id=INV, function_id="f")))
    assert wire == {"type": "invocationresult", "invocation_id": INV, "function_id": "f"}


def test_data_and_config_are_always_written() -> None:
    assert orjson.loads(codec.encode(m.InvokeFunction(function_id="f")))["data"] is None
    reg = m.RegisterTrigger(id="i", trigger_type="t", function_id="f")
    assert orjson.loads(codec.encode(reg))["config"] is None


def test_error_frame_encodes_but_is_never_accepted_from_a_worker() -> None:
    wire = codec.encode(m.ErrorFrame(error=m.ErrorBody("AUTH_ERROR", "no")))
    assert orjson.loads(wire) == {
        "type": "error",
        "error": {"code": "AUTH_ERROR", "message": "no"},
    }
    with pytest.raises(codec.DecodeError, match="unknown message type"):
        codec.decode(wire)


def test_missing_data_and_config_default_to_null() -> None:
    msg = codec.decode(b'{"type":"invokefunction","function_id":"f"}')
    assert msg.data is None
    reg = codec.decode(b'{"type":"registertrigger","id":"i","trigger_type":"t","function_id":"f"}')
    assert reg.config is None


def test_unknown_extra_fields_are_ignored() -> None:
    msg = codec.decode(b'{"type":"ping","extra":1}')
    assert msg == m.Ping()


@pytest.mark.parametrize("frame", [b"", b"   ", "\n\t"])
def test_empty_frames_are_ignored(frame: bytes | str) -> None:
    assert codec.decode(frame) is None


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'"x"', "not a JSON object"),
        (b'{"no_type":1}', "missing string field 'type'"),
        (b'{"type":5}', "missing string field 'type'"),
        (b'{"type":"unregisterall"}', "unknown message type 'unregisterall'"),
        (b'{"type":"InvokeFunction","function_id":"f"}', "unknown message type"),
        (b'{"type":"invokefunction"}', "missing field 'function_id'"),
        (b'{"type":"invokefunction","function_id":5}', "expected a string"),
        (b'{"type":"invokefunction","function_id":"f","namespace":1}', "expected a string"),
        (b'{"type":"invokefunction","function_id":"f","invocation_id":"nope"}', "not a UUID"),
        (b'{"type":"registerfunction"}', "missing field 'id'"),
        (b'{"type":"sup_ping","seq":"1"}', "expected an integer"),
    ],
)
def test_malformed_frames_raise_decode_error(frame: bytes, reason: str) -> None:
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(frame)
    assert reason in info.value.reason


def test_error_without_message_keeps_the_invocation_id_for_a_reply() -> None:
    frame = orjson.dumps(
        {
            "type": "invocationresult",
            "invocation_id": INV,
            "function_id": "f",
            "error": {"code": "x"},
        }
    )
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(frame)
    assert info.value.invocation_id == INV
    assert "message" in info.value.reason


@pytest.mark.parametrize(
    "msg",
    [s for s in SAMPLES if isinstance(s, m.InvokeFunction | m.InvocationResult)],
    ids=lambda s: type(s).__name__,
)
def test_fast_paths_match_the_converter(msg: Any) -> None:
    assert codec.to_dict(msg) == codec.generic_to_dict(msg)
    assert list(codec.to_dict(msg)) == list(codec.generic_to_dict(msg))  # same key order


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "invokefunction", "function_id": "f", "action": "void"},
        {"type": "invokefunction", "function_id": "f", "action": {"type": 1}},
        {"type": "invocationresult", "invocation_id": INV, "function_id": "f", "error": "x"},
        {
            "type": "invocationresult",
            "invocation_id": INV,
            "function_id": "f",
            "error": {"code": "c", "message": 2},
        },
        {"type": "invocationresult", "invocation_id": 5, "function_id": "f"},
    ],
)
def test_fast_paths_fall_back_to_the_converter_for_errors(frame: dict[str, Any]) -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode(orjson.dumps(frame))


def test_non_canonical_uuid_forms_are_still_accepted() -> None:
    braces = "{" + INV + "}"
    msg = codec.decode(
        orjson.dumps({"type": "invokefunction", "function_id": "f", "invocation_id": braces})
    )
    assert msg.invocation_id == braces


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        (r"a\ud800b", "a\ufffdb"),  # a lone high surrogate, as SDK 0.25 writes one
        (r"\udc80", "\ufffd"),  # a lone low one
        (r"\ud83d\ude00 \ud83d", "😀 \ufffd"),  # a pair stays a pair
        (r"\\ud800", "\\ud800"),  # an escaped backslash, then plain text: nothing to fix
        (r"\\\ud800", "\\\ufffd"),
    ],
)
def test_lone_surrogate_escapes_are_read_as_the_replacement_character(
    escaped: str, text: str
) -> None:
    inv = str(uuid.uuid4())
    frame = (
        '{"type":"invocationresult","invocation_id":"' + inv + '","function_id":"f",'
        '"result":"' + escaped + '"}'
    )
    msg = codec.decode(frame)
    assert msg.result == text
    assert codec.decode(codec.encode(msg)).result == text  # and it can be sent on


def test_a_frame_broken_otherwise_is_still_not_json() -> None:
    with pytest.raises(codec.DecodeError, match="not JSON"):
        codec.decode(r'{"type":"ping","x":"\ud800" oops}')
