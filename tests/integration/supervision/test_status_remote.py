"""``status --remote`` (SUPERVISOR.md §12): read-only rows for workers we do not run."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.integration.supervision.conftest import Up, command_worker, wait_for
from tests.support import sdk_client

UpFactory = Callable[..., Up]


def test_remote_workers_are_listed_only_on_request(up_factory: UpFactory) -> None:
    up = up_factory([command_worker("local", "sleep 1000")])
    up.start()
    up.wait_state("local", "ready")
    client = sdk_client(f"ws://127.0.0.1:{up.port}", "remote-billing")
    try:

        async def charge(data: Any) -> Any:
            return {"ok": True}

        client.register_function("billing::charge", charge)

        def listed() -> dict[str, Any] | None:
            doc = up.request("status", {"remote": True})
            rows = [r for r in doc.get("remote", []) if "billing::charge" in r["functions"]]
            return rows[0] if rows else None

        row = wait_for(listed, 10.0)
        assert row["name"] == "remote-billing"
        assert row["peer"] == "127.0.0.1"
        assert row["connected_since"].endswith("Z")
        assert "pid" not in row and "policy" not in row  # we do not supervise it
        plain = up.request("status")
        assert "remote" not in plain and plain["supervisor"]["bus"]["remote_workers"] >= 1
        text = up.cli("status", "--remote")
        assert text.returncode == 0, text.stderr
        line = next(x for x in text.stdout.splitlines() if x.startswith("remote-billing"))
        assert "REMOTE" in line and "1 function" in line
        assert "remote-billing" not in up.cli("status").stdout
        as_json = json.loads(up.cli("status", "--remote", "--json").stdout)
        assert any(r["name"] == "remote-billing" for r in as_json["remote"])
    finally:
        client.shutdown()
