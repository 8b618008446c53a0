"""Queue throughput end to end: 20,000 no-op jobs through iii-queue (builtin in memory, builtin
file-based, RabbitMQ) next to Celery and Dramatiq on the same local RabbitMQ.

A run's clock starts before the first enqueue and stops when the consumer has run the last job,
so the figure (jobs/s) covers producing, brokering and consuming. Setups:

* iii: ``iii-supervisor up`` with the queue actor; the producer is an SDK client calling
  ``TriggerAction.Enqueue`` from 8 threads (each call is a round trip: SDK → engine → queue
  actor → broker, acknowledged once stored — with RabbitMQ, once the broker confirmed it); the
  consumer is a no-op SDK function in the same process, queue concurrency 50.
* Celery 5 (``-P threads -c 8``, ``acks_late``) and Dramatiq 2 (1 process, 8 threads), each
  producing from one thread with its default publisher (no publisher confirms) and a no-op task
  that counts and writes a marker file at the last job.

RabbitMQ runs use a vhost of their own, deleted afterwards. ``python -m tests.perf.bench_queue
[N]`` (default 20,000); a system whose package or broker is missing is reported and skipped.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import BIN, REPO, EngineProcess, port_open, sdk_client, wait_for

JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
PRODUCERS = 8
TIMEOUT = 600.0


@contextmanager
def vhost() -> Iterator[str]:
    name = f"iii-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True)


def amqp(vh: str) -> str:
    return f"amqp://guest:guest@127.0.0.1:5672/{vh}"


# -- iii --------------------------------------------------------------------------------------


def bench_iii(block: dict[str, Any], tmp: Path) -> float:
    from iii import TriggerAction

    engine = EngineProcess({"workers": [{"name": "iii-queue", "config": block}]}, tmp)
    engine.env["III_LOG_LEVEL"] = "warning"
    engine.start()
    client = sdk_client(engine.url, "bench-queue")
    try:
        listed = lambda: {  # noqa: E731
            f["function_id"]
            for f in client.trigger({"function_id": "engine::functions::list", "payload": {}})[
                "functions"
            ]
        }
        wait_for(lambda: "engine::queue::enqueue" in listed(), 30.0, 0.1)
        count = [0]
        done = threading.Event()
        lock = threading.Lock()

        def noop(data: Any) -> None:
            with lock:
                count[0] += 1
                if count[0] >= JOBS:
                    done.set()

        client.register_function("bench::noop", noop)
        wait_for(lambda: "bench::noop" in listed(), 10.0)

        def produce(start: int) -> None:
            for n in range(start, JOBS, PRODUCERS):
                client.trigger(
                    {
                        "function_id": "bench::noop",
                        "payload": {"n": n},
                        "action": TriggerAction.Enqueue(queue="bench"),
                    }
                )

        began = time.perf_counter()
        with ThreadPoolExecutor(PRODUCERS) as pool:
            list(pool.map(produce, range(PRODUCERS)))
        if not done.wait(TIMEOUT):
            raise TimeoutError(f"iii: {count[0]} of {JOBS} jobs ran")
        return time.perf_counter() - began
    finally:
        client.shutdown()
        engine.stop()


def iii_queue(adapter: dict[str, Any]) -> dict[str, Any]:
    return {"adapter": adapter, "queue_configs": {"bench": {"concurrency": 50}}}


# -- Celery and Dramatiq: a consumer process each, a producer here ----------------------------

CELERY_APP = """
import os, threading
from celery import Celery
app = Celery("bench", broker=os.environ["BENCH_BROKER"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=50, task_ignore_result=True,
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
N = int(os.environ["BENCH_JOBS"]); MARK = os.environ["BENCH_MARK"]
lock = threading.Lock(); seen = [0]

@app.task(name="bench.noop")
def noop(n):
    with lock:
        seen[0] += 1
        if seen[0] == N:
            open(MARK, "w").close()
"""

DRAMATIQ_APP = """
import os, threading
import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
dramatiq.set_broker(RabbitmqBroker(url=os.environ["BENCH_BROKER"]))
N = int(os.environ["BENCH_JOBS"]); MARK = os.environ["BENCH_MARK"]
lock = threading.Lock(); seen = [0]

@dramatiq.actor(queue_name="bench", max_retries=0)
def noop(n):
    with lock:
        seen[0] += 1
        if seen[0] == N:
            open(MARK, "w").close()
"""


def bench_external(
    name: str, source: str, command: list[str], produce: Callable[[Any], None], broker: str
) -> float:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    (tmp / "benchapp.py").write_text(textwrap.dedent(source))
    mark = tmp / "done"
    env = {
        **os.environ,
        "BENCH_BROKER": broker,
        "BENCH_JOBS": str(JOBS),
        "BENCH_MARK": str(mark),
        "PYTHONPATH": str(tmp),
    }
    with open(tmp / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            command, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        sys.path.insert(0, str(tmp))
        os.environ.update(env)
        benchapp = importlib.import_module("benchapp")  # the producer side of the same app

        time.sleep(3.0)  # the worker connects and declares its queue
        began = time.perf_counter()
        produce(benchapp)
        wait_for(mark.exists, TIMEOUT, interval=0.005)
        return time.perf_counter() - began
    finally:
        sys.path.remove(str(tmp))
        sys.modules.pop("benchapp", None)
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def bench_celery(broker: str) -> float:
    def produce(app: Any) -> None:
        for n in range(JOBS):
            app.noop.delay(n)

    command = [str(BIN / "celery"), "-A", "benchapp", "worker", "-P", "threads", "-c", "8"]
    return bench_external("celery", CELERY_APP, [*command, "-l", "warning"], produce, broker)


def bench_dramatiq(broker: str) -> float:
    def produce(app: Any) -> None:
        for n in range(JOBS):
            app.noop.send(n)

    command = [str(BIN / "dramatiq"), "benchapp", "--processes", "1", "--threads", "8"]
    return bench_external("dramatiq", DRAMATIQ_APP, command, produce, broker)


# -- the table --------------------------------------------------------------------------------


def main() -> int:
    results: dict[str, float | str] = {}
    rabbit = port_open(5672) and shutil.which("rabbitmqctl") is not None

    def run(label: str, fn: Callable[[], float]) -> None:
        print(f"{label} ...", flush=True)
        try:
            seconds = fn()
            results[label] = JOBS / seconds
            print(f"  {JOBS} jobs in {seconds:.2f} s: {JOBS / seconds:,.0f} jobs/s", flush=True)
        except Exception as exc:  # report and go on: one missing system must not hide the rest
            results[label] = f"skipped ({type(exc).__name__}: {exc})"
            print(f"  {results[label]}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-iii-") as tmp:
        memory = Path(tmp) / "memory"
        memory.mkdir()
        run("iii builtin (in memory)", lambda: bench_iii(iii_queue({"name": "builtin"}), memory))
        on_disk = Path(tmp) / "file"
        on_disk.mkdir()
        file_adapter = {
            "name": "builtin",
            "config": {"store_method": "file_based", "file_path": str(on_disk / "q")},
        }
        run("iii builtin (file_based)", lambda: bench_iii(iii_queue(file_adapter), on_disk))
        if rabbit:
            with vhost() as vh:
                rmq = Path(tmp) / "rabbitmq"
                rmq.mkdir()
                adapter = {"name": "rabbitmq", "config": {"amqp_url": amqp(vh)}}
                run("iii rabbitmq", lambda: bench_iii(iii_queue(adapter), rmq))
            with vhost() as vh:
                run("celery rabbitmq", lambda: bench_celery(amqp(vh)))
            with vhost() as vh:
                run("dramatiq rabbitmq", lambda: bench_dramatiq(amqp(vh)))
        else:
            print("RabbitMQ (or rabbitmqctl) not available: its rows are skipped")

    print(f"\n{'system':28} {'jobs/s':>10}  vs iii rabbitmq")
    base = results.get("iii rabbitmq")
    for label, value in results.items():
        if isinstance(value, float):
            ratio = f"{value / base:.2f}x" if isinstance(base, float) else "-"
            print(f"{label:28} {value:>10,.0f}  {ratio}")
        else:
            print(f"{label:28} {value}")
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
