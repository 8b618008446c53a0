"""``iii-supervisor up --config deploy/config.compose.yaml``, the file compose mounts, run as it
is against the local Redis and RabbitMQ: the compose service names are mapped to 127.0.0.1
through the config's own ``${REDIS_HOST:redis}``-style variables, as compose's environment sets
them to the service names.

Proved here: every worker becomes ready, ``health --ready`` passes, a ``state::set`` made
through the SDK lands in Redis (read back with a plain Redis client), the queue block's AMQP
URL, resolved from the same variables, reaches RabbitMQ, and a job enqueued with the SDK's
``TriggerAction.Enqueue`` on the ``default`` queue goes through RabbitMQ to its function. The
broker's ``/`` vhost is shared, so the job carries a marker of its own run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pika
import pytest
import redis
import yaml
from iii import TriggerAction

from supervisor.config.interpolate import expand_text
from tests.integration.engine.conftest import function_ids
from tests.support import BIN, REPO, free_port, require_service, sdk_client, wait_for

CONFIG = REPO / "deploy" / "config.compose.yaml"

pytestmark = [pytest.mark.redis, pytest.mark.rabbitmq]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "iii-supervisor"), *args, "--config", str(CONFIG)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_compose_config_runs_on_local_redis_and_rabbitmq(tmp_path: Path) -> None:
    require_service("Redis", 6379)
    require_service("RabbitMQ", 5672)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("III_")}
    env.update(
        REDIS_HOST="127.0.0.1",
        REDIS_PASSWORD="",
        RABBITMQ_HOST="127.0.0.1",
        RABBITMQ_USER="guest",
        RABBITMQ_PASSWORD="guest",
        III_PORT=str(port),
        III_HTTP_PORT=str(free_port()),
        III_STREAM_PORT=str(free_port()),
        III_SUPERVISOR_STATE_DIR=str(tmp_path / "state"),
        III_SUPERVISOR_SOCKET=str(tmp_path / "ctl.sock"),
    )
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "iii-supervisor"), "up", "--config", str(CONFIG), "--log-format", "json"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    scope = f"compose-{uuid.uuid4().hex[:8]}"
    store = redis.Redis(host="127.0.0.1", port=6379, db=0)
    client = None
    try:
        deadline = time.monotonic() + 60
        while run_cli(env, "status").returncode != 0:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, run_cli(env, "status").stdout + log.read_text()
            time.sleep(0.25)
        assert run_cli(env, "health", "--ready").returncode == 0
        names = [line.split()[0] for line in run_cli(env, "status").stdout.splitlines()]
        assert {"iii-http", "iii-state", "iii-pubsub", "iii-stream", "iii-queue"} <= set(names)
        warnings = [
            rec.get("event", "")
            for rec in map(json.loads, log.read_text().splitlines())
            if rec.get("level") == "warning"
        ]
        assert not [w for w in warnings if "is not implemented" in w], warnings  # none skipped

        client = sdk_client(f"ws://127.0.0.1:{port}", "compose-check")
        value = {"n": 42, "via": "compose config"}
        client.trigger(
            {"function_id": "state::set", "payload": {"scope": scope, "key": "k", "value": value}}
        )
        raw = store.hget(f"state:{scope}", "k")
        assert raw is not None, f"no state:{scope} hash in Redis: {store.keys('state:*')}"
        assert json.loads(raw) == value

        # The queue's URL, expanded as the loader expands the file, reaches RabbitMQ.
        text, missing = expand_text(CONFIG.read_text(), env)
        assert not missing
        queue = next(w for w in yaml.safe_load(text)["workers"] if w["name"] == "iii-queue")
        url = queue["config"]["adapter"]["config"]["amqp_url"]
        assert url == "amqp://guest:guest@127.0.0.1:5672", url
        connection = pika.BlockingConnection(pika.URLParameters(url))
        assert connection.is_open
        connection.close()

        # A queued job: enqueued through the engine, delivered by RabbitMQ, run by the SDK.
        marker = uuid.uuid4().hex
        seen: list[Any] = []
        job = f"compose::job_{marker[:8]}"
        client.register_function(job, lambda data: seen.append(data.get("marker")))
        wait_for(lambda: job in function_ids(client), 10.0)
        receipt = client.trigger(
            {
                "function_id": job,
                "payload": {"marker": marker},
                "action": TriggerAction.Enqueue(queue="default"),
            }
        )
        assert receipt and receipt.get("messageReceiptId"), receipt
        wait_for(lambda: marker in seen, 20.0)

        assert run_cli(env, "shutdown").returncode == 0
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if client is not None:
            client.shutdown()
        store.delete(f"state:{scope}")
        store.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
