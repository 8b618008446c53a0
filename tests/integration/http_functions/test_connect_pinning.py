"""Where the actor's connections go (actors/http_functions/wire.py): with private addresses
blocked, a connection goes only to the public addresses the host resolves to when it is made,
so a name that passed validation cannot be re-pointed at a private address before the
connect (DNS rebinding). Real sockets and the real transport; the name lookup is the input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from actors.http_functions.service import HttpFunctions, connect_pin
from actors.http_functions.wire import one_write_transport
from manifests.blocks.http_functions import INVOKE_FUNCTION_ID, SecurityConfig
from tests.integration.http_functions.endpoint import Endpoint
from transport.client import FunctionError, InvocationContext

BLOCKING = SecurityConfig(require_https=False)  # any host, private addresses blocked


@pytest.fixture
def local() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.close()


class Lookup:
    """Answers for one name, in turn (the last one repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def __call__(self, host: str) -> list[str]:
        self.asked += 1
        return self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)


async def test_a_pin_sends_the_connection_to_the_address_it_allows(local: Endpoint) -> None:
    async def pin(host: str, port: int) -> list[str]:
        assert host == "hooks.test"
        return ["::1", "127.0.0.1"]  # nothing listens on the first (IPv4 only): the next

    transport = one_write_transport(pin=pin)
    async with httpx.AsyncClient(transport=transport, timeout=5) as client:
        reply = await client.post(f"http://hooks.test:{local.port}/echo", content=b'{"a": 1}')
    assert reply.json()["got"] == {"a": 1}
    assert local.requests_to("/echo")[-1].headers["host"] == f"hooks.test:{local.port}"


async def test_a_name_that_now_resolves_to_a_private_address_is_not_connected_to(
    local: Endpoint,
) -> None:
    lookup = Lookup(["127.0.0.1"])
    transport = one_write_transport(pin=connect_pin(BLOCKING, lookup))
    async with httpx.AsyncClient(transport=transport, timeout=5) as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.post(f"http://rebound.test:{local.port}/echo", content=b"{}")
    assert "Private IP blocked: 'rebound.test' resolves to 127.0.0.1" in str(info.value)
    assert lookup.asked == 1
    assert local.requests_to("/echo") == []


async def test_the_call_fails_with_url_validation_failed_when_the_lookup_changes(
    local: Endpoint,
) -> None:
    lookup = Lookup(["93.184.216.34"], ["127.0.0.1"])  # public when checked, private at connect
    transport = one_write_transport(pin=connect_pin(BLOCKING, lookup))
    async with httpx.AsyncClient(transport=transport) as client:
        fns = HttpFunctions(BLOCKING, client, env={}, resolve=lookup)
        data: dict[str, Any] = {
            "function_id": "ext::rebind",
            "invocation": {"url": f"http://rebind.test:{local.port}/echo", "timeout_ms": 5000},
            "data": {"a": 1},
        }
        with pytest.raises(FunctionError) as info:
            await fns.invoke(data, InvocationContext("i", INVOKE_FUNCTION_ID))
    assert info.value.code == "url_validation_failed"
    assert info.value.message == "Private IP blocked: 'rebind.test' resolves to 127.0.0.1"
    assert lookup.asked == 2
    assert local.requests_to("/echo") == []


def test_without_the_block_there_is_no_pin() -> None:
    assert connect_pin(SecurityConfig(block_private_ips=False)) is None
