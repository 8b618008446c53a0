"""Supervisor latencies and footprint: up → all ready, crash → restarted → re-registered, RSS.

* up → ready: from spawning ``iii-supervisor up`` to ``READY=1`` on a fake NOTIFY_SOCKET
  (the supervisor sends it once every autostart worker is ready).
* restart: SIGKILL the iii-state actor, then time until ``state::get`` answers again
  through the bus (process restarted, linked, registered), 20 times. The backoff policy is
  set to a flat 10 ms so the figure is the mechanism's own latency; with the default policy
  add its first delay (0.5 s ± 20 %).
* RSS: the supervisor, each keeper and each actor, summed over the whole process tree.
Targets (issue 3): restart ≤ 400 ms p50; up ≤ 1.5 s; total RSS ≤ 300 MiB.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from websockets.sync.client import connect

from tests.support import REPO, free_port

CRASHES = 20


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def call(ws: Any, function_id: str, data: object) -> dict:
    inv = str(uuid.uuid4())
    ws.send(
        json.dumps(
            {
                "type": "invokefunction",
                "invocation_id": inv,
                "function_id": function_id,
                "data": data,
            }
        )
    )
    while True:
        msg = json.loads(ws.recv(timeout=10))
        if msg.get("invocation_id") == inv:
            return msg


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    port, http_port = free_port(), free_port()
    flat = {"backoff": {"initial": "10ms", "multiplier": 1.0, "jitter": 0}, "max_restarts": 1000}
    config = {
        "workers": [
            {"name": "iii-worker-manager", "config": {"host": "127.0.0.1", "port": port}},
            {"name": "iii-http", "config": {"host": "127.0.0.1", "port": http_port}},
            {
                "name": "iii-state",
                "config": {
                    "adapter": {
                        "name": "kv",
                        "config": {"store_method": "file_based", "file_path": "state-db"},
                    }
                },
                "supervise": flat,
            },
            {"name": "iii-pubsub"},
        ]
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    notify_path = tmp / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "III_LOG_LEVEL": "warning"}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor.cli",
            "--log-format",
            "json",
            "up",
            "-c",
            str(tmp / "config.yaml"),
            "--state-dir",
            str(tmp / "state"),
            "--socket",
            str(tmp / "ctl.sock"),
        ],
        cwd=REPO,
        env=env,
        stdout=open(tmp / "up.log", "wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            msg = notify.recv(4096).decode()
            if "READY=1" in msg:
                up_seconds = time.monotonic() - t0
                break
        time.sleep(1.0)  # let start-up settle before measuring memory
        pids = tree(proc.pid)
        rows = [(pid, rss_kib(pid), cmdline(pid)) for pid in pids]
        total_mib = sum(r[1] for r in rows) / 1024

        latencies: list[float] = []
        with connect(f"ws://127.0.0.1:{port}") as ws:
            ws.recv(timeout=5)
            call(ws, "state::set", {"scope": "bench", "key": "k", "value": 1})
            for _ in range(CRASHES):
                actor = next(p for p, _, c in rows_now(proc.pid) if "actors.state" in c)
                start = time.monotonic()
                os.kill(actor, signal.SIGKILL)
                while True:
                    # A killed process cannot answer: the first success is the new actor.
                    reply = call(ws, "state::get", {"scope": "bench", "key": "k"})
                    if "error" not in reply:
                        latencies.append(time.monotonic() - start)
                        break
                    time.sleep(0.005)
                time.sleep(0.2)
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
        print("\nsupervisor: up → ready, crash → restarted → re-registered, memory")
        print(f"up → READY=1 (4 actors: http, state, pubsub, configuration): {up_seconds:.2f} s")
        print(
            f"crash → state::get answers again ({CRASHES} SIGKILLs, 10 ms flat backoff): "
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        )
        print("RSS by process:")
        for pid, kib, cmd in rows:
            print(f"  {kib / 1024:7.1f} MiB  {pid:>7}  {cmd[:90]}")
        print(f"  {total_mib:7.1f} MiB  total over {len(rows)} processes")
        ok = (p50 <= 400, up_seconds <= 1.5, total_mib <= 300)
        print(
            f"targets: restart p50 ≤ 400 ms {'PASS' if ok[0] else 'MISS'}; up ≤ 1.5 s "
            f"{'PASS' if ok[1] else 'MISS'}; total RSS ≤ 300 MiB {'PASS' if ok[2] else 'MISS'}"
        )
        return 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        notify.close()


def rows_now(root: int) -> list[tuple[int, int, str]]:
    return [(pid, 0, cmdline(pid)) for pid in tree(root)]


if __name__ == "__main__":
    sys.exit(main())
