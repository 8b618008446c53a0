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
[N] [ROUNDS]`` (default 20,000 jobs, 1 round; with more rounds every row runs once per round,
interleaved, and the table gives medians). ``BENCH_QUEUE_BASELINE=<checkout>`` runs the iii rows
a second time with that checkout's engine and actor (before/after in one run). A system whose
package or broker is missing is reported and skipped. The table gives each row ÷ Celery and
÷ Dramatiq and, per iii row, whether the targets (faster than Celery, within 1.5× of Dramatiq)
are met.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import BIN, REPO, EngineProcess, WorkerProcess, port_open, sdk_client, wait_for

JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 1
# Another checkout (an older revision) whose engine and actor run the same iii rows again, in
# the same run, marked "[baseline]": before and after side by side.
BASELINE = os.environ.get("BENCH_QUEUE_BASELINE")
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


III_CONSUMER = """
import os, threading
from iii import InitOptions, register_worker
N = int(os.environ["BENCH_JOBS"]); MARK = os.environ["BENCH_MARK"]
lock = threading.Lock(); seen = [0]
client = register_worker(
    os.environ["III_URL"], InitOptions(worker_name="bench-consumer", otel={"enabled": False})
)

def noop(data):
    with lock:
        seen[0] += 1
        if seen[0] == N:
            open(MARK, "w").close()

client.register_function("bench::noop", noop)
threading.Event().wait()
"""


def bench_iii(block: dict[str, Any], tmp: Path, tree: str | None = None) -> float:
    from iii import TriggerAction

    engine = EngineProcess({"workers": [{"name": "iii-queue", "config": block}]}, tmp)
    engine.env["III_LOG_LEVEL"] = "warning"
    if tree is not None:  # the engine and its actors import that checkout's code
        engine.env["PYTHONPATH"] = tree
    engine.start()
    client = sdk_client(engine.url, "bench-queue")
    mark = tmp / "done"
    consumer = WorkerProcess(
        III_CONSUMER, tmp, engine.url, "consumer", BENCH_JOBS=str(JOBS), BENCH_MARK=str(mark)
    )
    try:
        listed = lambda: {  # noqa: E731
            f["function_id"]
            for f in client.trigger({"function_id": "engine::functions::list", "payload": {}})[
                "functions"
            ]
        }
        wait_for(lambda: "engine::queue::enqueue" in listed(), 30.0, 0.1)
        wait_for(lambda: "bench::noop" in listed(), 30.0, 0.1)

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
        wait_for(mark.exists, TIMEOUT, interval=0.005)
        return time.perf_counter() - began
    finally:
        consumer.stop()
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

DRAMATIQ_SLACK = 1.5  # the target: every iii row within 1.5x of Dramatiq, and above Celery


def ratio(value: float | str | None, base: float | str | None) -> str:
    if isinstance(value, float) and isinstance(base, float):
        return f"{value / base:.2f}x"
    return "-"


def print_table(results: dict[str, float | str]) -> None:
    """Each row's jobs/s with its ratio to Celery and to Dramatiq, and whether each iii row
    meets the targets (faster than Celery, at least Dramatiq's / 1.5)."""
    celery, dramatiq = results.get("celery rabbitmq"), results.get("dramatiq rabbitmq")
    print(f"\n{'system':36} {'jobs/s':>10} {'/ Celery':>9} {'/ Dramatiq':>11}  targets")
    for label, value in results.items():
        if not isinstance(value, float):
            print(f"{label:36} {value}")
            continue
        verdict = ""
        if label.startswith("iii") and isinstance(celery, float) and isinstance(dramatiq, float):
            beats = value > celery
            close = value * DRAMATIQ_SLACK >= dramatiq
            verdict = "met" if beats and close else "MISSED"
            verdict += f" (> Celery: {'yes' if beats else 'no'}, "
            verdict += f">= Dramatiq/{DRAMATIQ_SLACK}: {'yes' if close else 'no'})"
        print(
            f"{label:36} {value:>10,.0f} {ratio(value, celery):>9} "
            f"{ratio(value, dramatiq):>11}  {verdict}"
        )


def main() -> int:
    samples: dict[str, list[float]] = {}
    failures: dict[str, str] = {}
    rabbit = port_open(5672) and shutil.which("rabbitmqctl") is not None
    trees: list[tuple[str, str | None]] = [("", None)]
    if BASELINE:
        trees.append((" [baseline]", BASELINE))

    def run(label: str, fn: Callable[..., float], *args: Any) -> None:
        print(f"{label} ...", flush=True)
        try:
            seconds = fn(*args)
            samples.setdefault(label, []).append(JOBS / seconds)
            print(f"  {JOBS} jobs in {seconds:.2f} s: {JOBS / seconds:,.0f} jobs/s", flush=True)
        except Exception as exc:  # report and go on: one missing system must not hide the rest
            failures[label] = f"skipped ({type(exc).__name__}: {exc})"
            print(f"  {failures[label]}", flush=True)

    def one_round(tmp: Path) -> None:
        for suffix, tree in trees:
            memory = Path(tempfile.mkdtemp(dir=tmp))
            memory_block = iii_queue({"name": "builtin"})
            run(f"iii builtin (in memory){suffix}", bench_iii, memory_block, memory, tree)
            on_disk = Path(tempfile.mkdtemp(dir=tmp))
            file_adapter = {
                "name": "builtin",
                "config": {"store_method": "file_based", "file_path": str(on_disk / "q")},
            }
            file_block = iii_queue(file_adapter)
            run(f"iii builtin (file_based){suffix}", bench_iii, file_block, on_disk, tree)
            if rabbit:
                with vhost() as vh:
                    rmq = Path(tempfile.mkdtemp(dir=tmp))
                    adapter = {"name": "rabbitmq", "config": {"amqp_url": amqp(vh)}}
                    run(f"iii rabbitmq{suffix}", bench_iii, iii_queue(adapter), rmq, tree)
        if rabbit:
            with vhost() as vh:
                run("celery rabbitmq", bench_celery, amqp(vh))
            with vhost() as vh:
                run("dramatiq rabbitmq", bench_dramatiq, amqp(vh))

    if not rabbit:
        print("RabbitMQ (or rabbitmqctl) not available: its rows are skipped")
    with tempfile.TemporaryDirectory(prefix="bench-iii-") as tmp:
        for n in range(ROUNDS):
            if ROUNDS > 1:
                print(f"-- round {n + 1} of {ROUNDS}", flush=True)
            one_round(Path(tmp))

    results: dict[str, float | str] = {
        label: statistics.median(values) for label, values in samples.items()
    }
    results.update({label: text for label, text in failures.items() if label not in results})
    if ROUNDS > 1:
        print(f"\n(medians of {ROUNDS} rounds; each row's range:)")
        for label, values in samples.items():
            print(f"  {label}: {min(values):,.0f}-{max(values):,.0f}")
    print_table(results)
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
