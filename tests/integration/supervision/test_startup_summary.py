"""The `engine ready` line names the workers `status` lists: nothing that has no row there."""

from __future__ import annotations

from collections.abc import Callable

from tests.integration.supervision.conftest import Up, command_worker

UpFactory = Callable[..., Up]


def test_engine_ready_lists_the_same_workers_as_status(up_factory: UpFactory) -> None:
    up = up_factory([{"name": "iii-state"}, command_worker("api", "sleep 1000")])
    up.start()
    up.wait_state("api", "ready")
    (ready,) = up.log_events("engine ready")
    in_status = sorted(row["name"] for row in up.request("status")["workers"])
    assert sorted(ready["workers"]) == in_status
    assert "iii-engine-functions" not in ready["workers"]
    assert "iii-observability" in ready["workers"]  # an actor: it has a status row
