"""The actor's channel sockets: a refused attach is the caller's error, not the actor's.

The engine answers 404 to an attach on a channel that no longer exists (it was released
while the actor was connecting). trio-websocket raises that refusal from its reader task;
before the fix it escaped into the actor's background nursery and killed the process
mid-request (seen in CI as "Server disconnected without sending a response").
"""

from __future__ import annotations

import trio
import trio_websocket

from actors.http.channels import BodyFeeder, channel_url, connect
from tests.integration.http.conftest import HttpStack
from tests.support import sdk_client


def test_refused_attach_raises_to_the_caller_and_spares_the_nursery(stack: HttpStack) -> None:
    url = channel_url(stack.engine.url, {"channel_id": "gone", "access_key": "k"}, "read")
    seen: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as bg:
            bg.start_soon(trio.sleep, 0.3)  # a sibling that must not be cancelled
            for _ in range(3):
                try:
                    await connect(bg, url)
                except trio_websocket.ConnectionRejected as exc:
                    seen.append(f"{exc.status_code}")
            await trio.sleep(0.3)
            seen.append("nursery alive")

    trio.run(main)
    assert seen == ["404", "404", "404", "nursery alive"]


def test_body_feeder_on_a_released_channel_ends_quietly(stack: HttpStack) -> None:
    url = channel_url(stack.engine.url, {"channel_id": "gone", "access_key": "k"}, "write")

    async def main() -> bool:
        async with trio.open_nursery() as bg:
            feeder = BodyFeeder(url, data=b"payload")
            bg.start_soon(feeder.run, bg)
        return True

    assert trio.run(main)


def test_an_accepted_socket_still_works_after_refusals(stack: HttpStack) -> None:
    """A live channel: the writer's bytes reach the reader through two hosted sockets."""
    client = sdk_client(stack.engine.url, "channel-sockets")
    try:
        channel = client.trigger({"function_id": "engine::channels::create", "payload": {}})
    finally:
        client.shutdown()
    reader_url = channel_url(stack.engine.url, channel["reader"], "read")
    writer_url = channel_url(stack.engine.url, channel["writer"], "write")

    async def main() -> bytes:
        async with trio.open_nursery() as bg:
            reader = await connect(bg, reader_url)
            writer = await connect(bg, writer_url)
            await writer.send_message(b"hello")
            await writer.aclose()
            got = await reader.get_message()
            await reader.aclose()
        assert isinstance(got, bytes)  # binary frames stay binary
        return got

    assert trio.run(main) == b"hello"
