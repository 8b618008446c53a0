"""The ``iii-http-functions`` block as config.yaml and the actor read it, and the actor's two
functions up to the point where a request would leave: workers are refused, a URL is checked
again on every call (``url_validation_failed``), bad input names its field. The httpx client
here has a transport that fails the test if anything is sent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from actors.http_functions import parse_config
from actors.http_functions.service import HttpFunctions
from manifests.blocks.http_functions import (
    INVOKE_FUNCTION_ID,
    REGISTER_FUNCTION_ID,
    HttpFunctionsBlock,
    SecurityConfig,
)
from manifests.blocks.strict import BlockError
from supervisor.config.blocks import validate_block
from transport.client import FunctionError, InvocationContext

# -- the block ----------------------------------------------------------------------------------


def test_the_block_defaults_are_upstreams() -> None:
    block = parse_config(None)
    assert block == HttpFunctionsBlock()
    assert block.security.require_https and block.security.block_private_ips
    assert [p.pattern for p in block.security.host_patterns()] == [".*"]  # empty: any host
    assert parse_config({"security": {}}).security == SecurityConfig()


def test_the_sdk_suite_block() -> None:
    block = parse_config(
        {
            "security": {
                "url_allowlist": ["localhost", "127.0.0.1"],
                "block_private_ips": False,
                "require_https": False,
            }
        }
    )
    assert block.security.url_allowlist == ("localhost", "127.0.0.1")


def test_an_invalid_glob_or_field_is_a_config_error_naming_its_path() -> None:
    _, issues = validate_block("iii-http-functions", {"security": {"url_allowlist": ["ok", "[x"]}})
    assert [(path, message.split(":")[0]) for path, message in issues] == [
        (("security", "url_allowlist", 1), "invalid pattern '[x'")
    ]
    _, issues = validate_block(
        "iii-http-functions", {"security": {"require_https": "no", "allow": 1}}
    )
    paths = {path for path, _ in issues}
    assert paths == {("security", "require_https"), ("security", "allow")}
    with pytest.raises(BlockError, match="url_allowlist"):
        parse_config({"security": {"url_allowlist": "localhost"}})


# -- the functions ------------------------------------------------------------------------------


def refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request may be sent here, got {request.url}")


class Resolver:
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def __call__(self, host: str) -> list[str]:
        return self.addresses


def service(resolver: Resolver, env: dict[str, str] | None = None) -> HttpFunctions:
    security = SecurityConfig(require_https=False)  # private IPs blocked, any host
    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    return HttpFunctions(security, client, env=env or {}, resolve=resolver)


CTX = InvocationContext(invocation_id="i", function_id=INVOKE_FUNCTION_ID)


def engine_call(url: str, **invocation: Any) -> dict[str, Any]:
    return {"function_id": "ext::f", "invocation": {"url": url, **invocation}, "data": {"a": 1}}


async def failure(coro: Any) -> FunctionError:
    with pytest.raises(FunctionError) as info:
        await coro
    return info.value


async def test_a_url_is_validated_again_on_every_call() -> None:
    resolver = Resolver(["93.184.216.34"])
    fns = service(resolver)
    ok = await fns.validate(engine_call("http://hooks.example/x"), CTX)
    assert ok == {"function_id": "ext::f", "url": "http://hooks.example/x", "method": "POST"}
    resolver.addresses = ["10.0.0.7"]  # the name now points inside
    err = await failure(fns.invoke(engine_call("http://hooks.example/x"), CTX))
    assert err.code == "url_validation_failed"
    assert err.message == "Private IP blocked: 'hooks.example' resolves to 10.0.0.7"


async def test_registration_checks_report_their_reason() -> None:
    fns = service(Resolver(["93.184.216.34"]), env={"SET": "v"})
    err = await failure(fns.validate(engine_call("http://127.0.0.1/x"), CTX))
    assert (err.code, err.message) == ("url_validation_failed", "Private IP blocked: 127.0.0.1")
    bearer = {"type": "bearer", "token_key": "UNSET"}
    err = await failure(fns.validate(engine_call("http://a.example/", auth=bearer), CTX))
    assert err.code == "invalid_invocation" and "'UNSET', which is not set" in err.message
    err = await failure(fns.validate(engine_call("http://a.example/", method="TRACE"), CTX))
    assert err.code == "invalid_invocation" and err.message.startswith("ext::f: ")
    err = await failure(fns.validate({"invocation": {"url": "http://a.example/"}}, CTX))
    assert err.code == "deserialization_error" and "function_id" in err.message


async def test_calls_from_workers_are_refused() -> None:
    fns = service(Resolver(["93.184.216.34"]))
    payload = {**engine_call("http://a.example/"), "_caller_worker_id": "w-1"}
    for fn, fid in ((fns.validate, REGISTER_FUNCTION_ID), (fns.invoke, INVOKE_FUNCTION_ID)):
        err = await failure(fn(payload, CTX))
        assert err.code == "FORBIDDEN" and fid in err.message
