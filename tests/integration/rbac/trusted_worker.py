"""The trusted worker of the RBAC tests: on the plain listener it registers the auth function,
the middleware, the three registration hooks and the functions RBAC clients try to reach.
Every call to them is recorded; ``test::rbac-worker::calls`` returns the record. The
``hang`` variants (token ``hang-token``, function ids ``hang::*``, trigger ids with ``hang``,
a middleware payload ``{"hang": true}``) never answer: async, so they hold no SDK thread."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from iii import InitOptions, register_worker
from iii.iii_types import TriggerActionEnqueue, TriggerActionVoid
from iii_helpers.worker_connection_manager import (
    AuthInput,
    AuthResult,
    OnFunctionRegistrationInput,
    OnFunctionRegistrationResult,
    OnTriggerRegistrationInput,
    OnTriggerRegistrationResult,
    OnTriggerTypeRegistrationInput,
    OnTriggerTypeRegistrationResult,
)

HANG = 3600.0

w = register_worker(os.environ["III_URL"], InitOptions(worker_name="rbac-worker"))
calls: dict[str, Any] = {
    "auth": [],
    "middleware": [],
    "fn_hook": [],
    "trigger_hook": [],
    "type_hook": [],
    "secret": 0,
}


async def auth(data: dict[str, Any]) -> Any:
    inp = AuthInput(**data)  # raises on a missing key or a wrong type, as the SDK suite's does
    calls["auth"].append(data)
    token = inp.headers.get("x-test-token") or inp.headers.get("authorization", "").removeprefix(
        "Bearer "
    )
    if token == "hang-token":
        await asyncio.sleep(HANG)
    if token == "slow-token":
        await asyncio.sleep(0.5)
        token = "valid-token"
    if token.startswith("valid-token"):  # valid-token-<tag>: one test's connections
        return AuthResult(
            allowed_functions=["test::ew::granted"],
            forbidden_functions=["test::ew::public::forbidden"],
            context={"role": "admin", "user_id": "user-1"},
        ).model_dump()
    if token == "prefix-token":
        return AuthResult(
            function_registration_prefix="tenant",
            allow_trigger_type_registration=True,
            context={"user_id": "tenant-1"},
        ).model_dump()
    if token == "scoped-token":
        return AuthResult(namespaces={"orders": ["svc::*"]}).model_dump()
    if token == "garbage-token":
        return ["not", "an", "object"]
    raise Exception("invalid token")


async def middleware(data: dict[str, Any]) -> Any:
    calls["middleware"].append(data)
    payload = data.get("payload")
    if isinstance(payload, dict) and payload.get("hang"):
        await asyncio.sleep(HANG)
    if isinstance(payload, dict) and payload.get("reject"):
        raise Exception("rejected by middleware")
    request: dict[str, Any] = {
        "function_id": data["function_id"],
        "payload": payload,
        "namespace": data.get("namespace"),
    }
    action = data.get("action")
    if action and action.get("type") == "void":
        request["action"] = TriggerActionVoid()
    elif action and action.get("type") == "enqueue":
        request["action"] = TriggerActionEnqueue(queue=action["queue"])
    return await w.trigger_async(request)


async def on_function(data: dict[str, Any]) -> Any:
    inp = OnFunctionRegistrationInput(**data)
    calls["fn_hook"].append(data)
    if inp.function_id.startswith("hang::"):
        await asyncio.sleep(HANG)
    if inp.function_id.startswith("deny::"):
        raise Exception("function registration denied")
    if inp.function_id.startswith("rename::"):
        return {"function_id": "renamed::" + inp.function_id.removeprefix("rename::")}
    return OnFunctionRegistrationResult().model_dump()


async def on_trigger(data: dict[str, Any]) -> Any:
    inp = OnTriggerRegistrationInput(**data)
    calls["trigger_hook"].append(data)
    if "hang" in inp.trigger_id:
        await asyncio.sleep(HANG)
    if "deny" in inp.trigger_id:
        raise Exception("trigger registration denied")
    return OnTriggerRegistrationResult().model_dump()


def on_trigger_type(data: dict[str, Any]) -> Any:
    inp = OnTriggerTypeRegistrationInput(**data)
    calls["type_hook"].append(data)
    if inp.trigger_type_id.startswith("deny"):
        raise Exception("trigger type registration denied")
    return OnTriggerTypeRegistrationResult().model_dump()


def secret(data: Any) -> Any:
    calls["secret"] += 1
    return {"secret": True}


w.register_function("test::rbac-worker::auth", auth)
w.register_function("test::rbac-worker::middleware", middleware)
w.register_function("test::rbac-worker::on-function-reg", on_function)
w.register_function("test::rbac-worker::on-trigger-reg", on_trigger)
w.register_function("test::rbac-worker::on-trigger-type-reg", on_trigger_type)
w.register_function("test::rbac-worker::calls", lambda _: calls)
w.register_function("test::ew::public::echo", lambda d: {"echo": d})
w.register_function("test::ew::public::forbidden", lambda d: {"reached": True})
w.register_function("test::ew::private::secret", secret)
w.register_function("test::ew::granted", lambda d: {"granted": True})
w.register_function(
    "test::ew::by-metadata", lambda d: {"by_metadata": True}, metadata={"ew_public": True}
)
w.register_function("test::rbac-worker::noop", lambda d: None)
w.register_trigger(
    {"type": "engine::workers-available", "function_id": "test::rbac-worker::noop", "config": {}}
)
print("trusted worker ready", flush=True)
while True:
    time.sleep(1)
