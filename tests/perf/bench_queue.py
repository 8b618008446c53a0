"""Queue throughput end to end: 20,000 no-op jobs through iii-queue (builtin in memory, builtin
file-based, RabbitMQ) next to Celery and Dramatiq on the same local RabbitMQ.

A run's clock starts before the first enqueue and stops when the consumer has run the last job,
so the figure (jobs/s) covers producing, brokering and consuming. Beside it, the CPU time per
job of every process of the setup (engine and its actors, producer, consumer, the benchmark
itself, and RabbitMQ's node where the row uses it), from ``/proc``: wall figures move with the
machine's load, CPU per job much less. Setups, each with the producer and the consumer in
processes of their own:

* iii: ``iii-supervisor up`` with the queue actor (queue concurrency 50). The producer is an
  SDK worker process whose ``bench::produce`` (triggered once, void) enqueues the jobs with
  ``TriggerAction.Enqueue`` from ``--in-flight`` (default 64) concurrent ``trigger_async`` loops:
  each enqueue is a round trip (SDK → engine → queue actor → broker) acknowledged once stored —
  with RabbitMQ, once the broker confirmed it — and a loop sends its next job only then. The
  consumer is another SDK worker process with an ``async def`` no-op function.
  ``--sdk-sync`` runs them as the SDK's README writes them instead: 8 threads calling the sync
  ``trigger``, and a sync no-op (SDK 0.23 starts an OS thread per call of a sync handler).
* Celery 5 (``-P threads -c 8``, ``acks_late``) and Dramatiq 2 (1 process, 8 threads) workers,
  with the producer in this process: one thread, each system's default publisher (no publisher
  confirms, so nothing is waited for), a no-op task that counts and writes a marker file at the
  last job.

Fairness, as far as it goes: the iii producer waits for an acknowledgement per job and the
others wait for none, so theirs keep as many jobs in flight as the socket buffers take. The iii
producer's window is 64 enqueues: the smallest at which the window stops being the limit. On
the quiet machine (2026-12-04, RabbitMQ row, one run each) 8 gave 2,074 jobs/s, 16 2,743,
32 3,353, 64 3,579, 128 3,560 and 256 3,848: below 64 the row measured how long our producer
waits for confirms with too few in flight, not what the queue carries. Until 2026-12-04 the
window was 8; the information row ``iii rabbitmq, 8 in flight`` keeps that figure beside the
others (``--no-narrow`` skips it). The default engine also records a span per
invocation (2 per job) for iii-observability; they trace nothing. Until 2026-12-03 14:00 the iii
producer ran 8 threads of sync calls in this process; the ``--sdk-sync`` rows keep that
producer's shape (in its own process now).

Guarantees: every system here uses durable queues, persistent messages (delivery mode 2, each
system's default) and acks a job after its task ran (Celery's ``acks_late``, Dramatiq's and
iii's manual acks). Only iii's producer uses publisher confirms, which the issue requires;
Celery's ``confirm_publish`` and Dramatiq's ``confirm_delivery`` are off by default and off
in the rows the targets compare against; two more rows run each with them on (information:
like for like with iii's producer; ``--no-confirmed`` skips them). The confirm of a persistent message waits for the broker to write it (or for its
consumer's ack): 2-4 ms on this machine, so with 8 enqueues in flight the iii RabbitMQ row is
bounded by that round trip as much as by CPU. For scale, one pika thread that does nothing else
(8 confirmed persistent publishes in flight, each message consumed and acked at once, one
connection) reached 2,000-2,500 messages/s here (2026-12-03, a loaded machine).

Each run prints its CPU per job by process beside the total: the engine's actors by module
(``queue``, ``observability``), ``engine``, ``producer``, ``consumer``, ``rabbitmq`` (the
node), and ``bench`` (this process, which is the producer of the Celery and Dramatiq rows).

RabbitMQ runs use a vhost of their own, deleted afterwards. ``python -m tests.perf.bench_queue
[N] [ROUNDS] [--only WORD,...] [--in-flight K] [--sdk-sync]`` (default 20,000 jobs, 1 round;
with more rounds every row runs once per round, interleaved, and the table gives medians;
``--only builtin`` runs the rows whose label holds one of the words: ``builtin``, ``file``,
``memory``, ``rabbitmq``, ``iii``, ``celery``, ``dramatiq``). ``BENCH_QUEUE_BASELINE=<checkout>``
runs the iii rows a second time with that checkout's engine and actor (before/after in one run).
A system whose package or broker is missing is reported and skipped. The table gives each row
÷ Celery and ÷ Dramatiq and, per iii row, whether the targets (faster than Celery, within 1.5×
of Dramatiq) are met — when those rows ran.
"""

from __future__ import annotations

import argparse
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.perf._procs import cpu_of, descendants
from tests.support import BIN, REPO, EngineProcess, WorkerProcess, port_open, sdk_client, wait_for

JOBS = 20_000
ROUNDS = 1
IN_FLIGHT = 64  # the iii producer's enqueues awaiting their acknowledgement at any time
# The earlier window, run once more on RabbitMQ as information (--no-narrow: not).
NARROW: int | None = 8
# Also run Celery and Dramatiq with publisher confirms on, as information beside the targets
# (which are against their defaults): like for like with iii's producer (--no-confirmed: not).
CONFIRMED = True
SDK_SYNC = False  # --sdk-sync: sync producer threads and a sync handler, as the SDK README
# Another checkout (an older revision) whose engine and actor run the same iii rows again, in
# the same run, marked "[baseline]": before and after side by side.
BASELINE = os.environ.get("BENCH_QUEUE_BASELINE")
TIMEOUT = 600.0


def rabbitmq_pids() -> list[int]:
    """The local RabbitMQ node (beam.smp) and its helpers: they work for the RabbitMQ rows."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"beam.smp" in cmd and b"rabbit" in cmd:
                pids.append(int(entry.name))
    return pids


class Measured:
    """One run's wall time, the CPU time its processes spent, and that time by process."""

    def __init__(self, seconds: float, cpu: float, parts: dict[str, float] | None = None) -> None:
        self.seconds = seconds
        self.cpu = cpu
        self.parts = parts or {}


def role_of(pid: int) -> str:
    """A short name for a process of a run: the actor's module, ``engine``, ``rabbitmq``..."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [w.decode(errors="replace") for w in cmd if w]
    if "-m" in words and words.index("-m") + 1 < len(words):
        return words[words.index("-m") + 1].removeprefix("actors.")
    if any("beam.smp" in w for w in words):
        return "rabbitmq"
    if any("iii-supervisor" in w for w in words):
        return "engine"
    return Path(words[0]).name if words else "?"


def cpu_by(pids: dict[int, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pid, role in pids.items():
        out[role] = out.get(role, 0.0) + cpu_of([pid])
    return out


def parts_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before.get(role, 0.0) for role in after}


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

def count():
    with lock:
        seen[0] += 1
        if seen[0] == N:
            open(MARK, "w").close()

if os.environ.get("BENCH_SDK_SYNC"):
    def noop(data):  # the SDK runs it on a thread of its own, one per call
        count()
else:
    async def noop(data):
        count()

client.register_function("bench::noop", noop)
threading.Event().wait()
"""

III_PRODUCER = """
import asyncio, os, threading, traceback
from iii import InitOptions, TriggerAction, register_worker
FAILED = os.environ["BENCH_FAILED"]
client = register_worker(
    os.environ["III_URL"], InitOptions(worker_name="bench-producer", otel={"enabled": False})
)

def job(n):
    return {"function_id": "bench::noop", "payload": {"n": n},
            "action": TriggerAction.Enqueue(queue="bench")}

def failed():
    with open(FAILED, "w") as fh:
        fh.write(traceback.format_exc())

if os.environ.get("BENCH_SDK_SYNC"):
    def produce(data):  # 8 threads of sync calls, as the SDK README calls trigger
        jobs, lanes = data["jobs"], 8
        def lane(start):
            try:
                for n in range(start, jobs, lanes):
                    client.trigger(job(n))
            except Exception:
                failed()
        for start in range(lanes):
            threading.Thread(target=lane, args=(start,), daemon=True).start()
else:
    async def produce(data):
        jobs, lanes = data["jobs"], data["in_flight"]
        async def lane(start):
            for n in range(start, jobs, lanes):
                await client.trigger_async(job(n))
        try:
            await asyncio.gather(*(lane(start) for start in range(lanes)))
        except Exception:
            failed()

client.register_function("bench::produce", produce)
threading.Event().wait()
"""


def bench_iii(
    block: dict[str, Any],
    tmp: Path,
    tree: str | None = None,
    rabbit: bool = False,
    *,
    in_flight: int,
) -> Measured:
    from iii import TriggerAction

    engine = EngineProcess({"workers": [{"name": "iii-queue", "config": block}]}, tmp)
    engine.env["III_LOG_LEVEL"] = "warning"
    if tree is not None:  # the engine and its actors import that checkout's code
        engine.env["PYTHONPATH"] = tree
    engine.start()
    client = sdk_client(engine.url, "bench-queue")
    mark, failed = tmp / "done", tmp / "failed"
    sync = {"BENCH_SDK_SYNC": "1"} if SDK_SYNC else {}
    consumer = WorkerProcess(
        III_CONSUMER,
        tmp,
        engine.url,
        "consumer",
        BENCH_JOBS=str(JOBS),
        BENCH_MARK=str(mark),
        **sync,
    )
    producer = WorkerProcess(
        III_PRODUCER, tmp, engine.url, "producer", BENCH_FAILED=str(failed), **sync
    )
    try:
        listed = lambda: {  # noqa: E731
            f["function_id"]
            for f in client.trigger({"function_id": "engine::functions::list", "payload": {}})[
                "functions"
            ]
        }
        wanted = {"engine::queue::enqueue", "bench::noop", "bench::produce"}
        wait_for(lambda: wanted <= listed(), 30.0, 0.1)
        assert engine.proc is not None
        pids = [
            *[engine.proc.pid, *descendants(engine.proc.pid)],
            consumer.proc.pid,
            producer.proc.pid,
            os.getpid(),
        ]
        if rabbit:
            pids += rabbitmq_pids()
        roles = {pid: role_of(pid) for pid in pids}
        roles.update({consumer.proc.pid: "consumer", producer.proc.pid: "producer"})
        roles[os.getpid()] = "bench"
        cpu = cpu_of(pids)
        before = cpu_by(roles)
        began = time.perf_counter()
        client.trigger(
            {
                "function_id": "bench::produce",
                "payload": {"jobs": JOBS, "in_flight": in_flight},
                "action": TriggerAction.Void(),
            }
        )
        wait_for(lambda: mark.exists() or failed.exists(), TIMEOUT, interval=0.005)
        seconds = time.perf_counter() - began
        if failed.exists():
            raise RuntimeError(f"the producer failed: {failed.read_text()[-400:]}")
        return Measured(seconds, cpu_of(pids) - cpu, parts_between(before, cpu_by(roles)))
    finally:
        producer.stop()
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
if os.environ.get("BENCH_CONFIRM"):  # publisher confirms, as iii's producer waits for
    app.conf.broker_transport_options = {"confirm_publish": True}
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
# confirm_delivery: publisher confirms, as iii's producer waits for
dramatiq.set_broker(RabbitmqBroker(url=os.environ["BENCH_BROKER"],
                                   confirm_delivery=bool(os.environ.get("BENCH_CONFIRM"))))
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
    name: str,
    source: str,
    command: list[str],
    produce: Callable[[Any], None],
    broker: str,
    confirm: bool = False,
) -> Measured:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    (tmp / "benchapp.py").write_text(textwrap.dedent(source))
    mark = tmp / "done"
    env = {
        **os.environ,
        "BENCH_BROKER": broker,
        "BENCH_JOBS": str(JOBS),
        "BENCH_MARK": str(mark),
        "PYTHONPATH": str(tmp),
        "BENCH_CONFIRM": "1" if confirm else "",
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
        pids = [worker.pid, *descendants(worker.pid), os.getpid(), *rabbitmq_pids()]
        roles = {pid: "worker" for pid in [worker.pid, *descendants(worker.pid)]}
        roles.update({pid: "rabbitmq" for pid in rabbitmq_pids()})
        roles[os.getpid()] = "bench (producer)"
        cpu = cpu_of(pids)
        before = cpu_by(roles)
        began = time.perf_counter()
        produce(benchapp)
        wait_for(mark.exists, TIMEOUT, interval=0.005)
        seconds = time.perf_counter() - began
        return Measured(seconds, cpu_of(pids) - cpu, parts_between(before, cpu_by(roles)))
    finally:
        sys.path.remove(str(tmp))
        sys.modules.pop("benchapp", None)
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def bench_celery(broker: str, confirm: bool = False) -> Measured:
    def produce(app: Any) -> None:
        for n in range(JOBS):
            app.noop.delay(n)

    command = [str(BIN / "celery"), "-A", "benchapp", "worker", "-P", "threads", "-c", "8"]
    command += ["-l", "warning"]
    return bench_external("celery", CELERY_APP, command, produce, broker, confirm)


def bench_dramatiq(broker: str, confirm: bool = False) -> Measured:
    def produce(app: Any) -> None:
        for n in range(JOBS):
            app.noop.send(n)

    command = [str(BIN / "dramatiq"), "benchapp", "--processes", "1", "--threads", "8"]
    return bench_external("dramatiq", DRAMATIQ_APP, command, produce, broker, confirm)


# -- the table --------------------------------------------------------------------------------

DRAMATIQ_SLACK = 1.5  # the target: every iii row within 1.5x of Dramatiq, and above Celery
INFORMATION = " in flight"  # rows with a window other than the default: no verdict


def ratio(value: float | str | None, base: float | str | None) -> str:
    if isinstance(value, float) and isinstance(base, float):
        return f"{value / base:.2f}x"
    return "-"


def print_table(results: dict[str, float | str], cpu: dict[str, float]) -> None:
    """Each row's jobs/s and CPU per job with its ratio to Celery and to Dramatiq, and whether
    each iii row meets the targets (faster than Celery, at least Dramatiq's / 1.5)."""
    celery, dramatiq = results.get("celery rabbitmq"), results.get("dramatiq rabbitmq")
    head = f"\n{'system':36} {'jobs/s':>10} {'CPU/job':>9} {'/ Celery':>9} {'/ Dramatiq':>11}"
    print(f"{head}  targets")
    for label, value in results.items():
        if not isinstance(value, float):
            print(f"{label:36} {value}")
            continue
        verdict = "information" if label.endswith(INFORMATION) else ""
        if (
            not verdict
            and label.startswith("iii")
            and isinstance(celery, float)
            and isinstance(dramatiq, float)
        ):
            beats = value > celery
            close = value * DRAMATIQ_SLACK >= dramatiq
            verdict = "met" if beats and close else "MISSED"
            verdict += f" (> Celery: {'yes' if beats else 'no'}, "
            verdict += f">= Dramatiq/{DRAMATIQ_SLACK}: {'yes' if close else 'no'})"
        per_job = f"{cpu[label] * 1e6:,.0f} us" if label in cpu else "-"
        print(
            f"{label:36} {value:>10,.0f} {per_job:>9} {ratio(value, celery):>9} "
            f"{ratio(value, dramatiq):>11}  {verdict}"
        )
    c_celery = results.get("celery rabbitmq, publisher confirms")
    c_dramatiq = results.get("dramatiq rabbitmq, publisher confirms")
    for label, value in results.items():
        if label.startswith("iii rabbitmq") and isinstance(value, float):
            if label.endswith(INFORMATION):
                continue
            print(
                f"like for like ({label}; Celery and Dramatiq with publisher confirms too, "
                f"information, not the target): {ratio(value, c_celery)} of Celery, "
                f"{ratio(value, c_dramatiq)} of Dramatiq"
            )


def parse_args(argv: list[str]) -> list[str]:
    """Set the run's settings from the command line; the ``--only`` words (empty: all rows)."""
    global JOBS, ROUNDS, IN_FLIGHT, SDK_SYNC, CONFIRMED, NARROW
    parser = argparse.ArgumentParser(prog="python -m tests.perf.bench_queue")
    parser.add_argument("jobs", nargs="?", type=int, default=JOBS)
    parser.add_argument("rounds", nargs="?", type=int, default=ROUNDS)
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated words: run only the rows whose label holds one "
        "(builtin, memory, file, rabbitmq, 'iii rabbitmq', celery, dramatiq, iii)",
    )
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    parser.add_argument("--sdk-sync", action="store_true")
    parser.add_argument(
        "--no-narrow",
        action="store_true",
        help=f"skip the RabbitMQ row with the earlier window of {NARROW} enqueues (information)",
    )
    parser.add_argument(
        "--no-confirmed",
        action="store_true",
        help="skip the Celery and Dramatiq rows with publisher confirms on (information only)",
    )
    args = parser.parse_args(argv)
    JOBS, ROUNDS, IN_FLIGHT, SDK_SYNC = args.jobs, args.rounds, args.in_flight, args.sdk_sync
    CONFIRMED = not args.no_confirmed
    if args.no_narrow or SDK_SYNC or NARROW == IN_FLIGHT:
        NARROW = None
    return [w.strip() for w in args.only.split(",") if w.strip()]


def main(argv: list[str]) -> int:
    only = parse_args(argv)
    samples: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    failures: dict[str, str] = {}
    rabbit = port_open(5672) and shutil.which("rabbitmqctl") is not None
    trees: list[tuple[str, str | None]] = [("", None)]
    if BASELINE:
        trees.append((" [baseline]", BASELINE))
    mode = "sync SDK calls, 8 threads" if SDK_SYNC else f"async SDK calls, {IN_FLIGHT} in flight"
    print(f"{JOBS:,} jobs, {ROUNDS} round(s); iii producer: {mode}", flush=True)

    def wanted(label: str) -> bool:
        return not only or any(word in label for word in only)

    def run(label: str, fn: Callable[..., Measured], *args: Any, **kwargs: Any) -> None:
        print(f"{label} ...", flush=True)
        try:
            got = fn(*args, **kwargs)
            samples.setdefault(label, []).append(JOBS / got.seconds)
            cpu.setdefault(label, []).append(got.cpu / JOBS)
            print(
                f"  {JOBS} jobs in {got.seconds:.2f} s: {JOBS / got.seconds:,.0f} jobs/s, "
                f"CPU {got.cpu / JOBS * 1e6:,.0f} us/job",
                flush=True,
            )
            by = ", ".join(
                f"{role} {seconds / JOBS * 1e6:,.0f}"
                for role, seconds in sorted(got.parts.items(), key=lambda kv: -kv[1])
                if seconds / JOBS >= 1e-6
            )
            print(f"    us/job by process: {by}", flush=True)
        except Exception as exc:  # report and go on: one missing system must not hide the rest
            failures[label] = f"skipped ({type(exc).__name__}: {exc})"
            print(f"  {failures[label]}", flush=True)

    def one_round(tmp: Path) -> None:
        for suffix, tree in trees:
            label = f"iii builtin (in memory){suffix}"
            if wanted(label):
                memory = Path(tempfile.mkdtemp(dir=tmp))
                run(
                    label,
                    bench_iii,
                    iii_queue({"name": "builtin"}),
                    memory,
                    tree,
                    in_flight=IN_FLIGHT,
                )
            label = f"iii builtin (file_based){suffix}"
            if wanted(label):
                on_disk = Path(tempfile.mkdtemp(dir=tmp))
                file_adapter = {
                    "name": "builtin",
                    "config": {"store_method": "file_based", "file_path": str(on_disk / "q")},
                }
                run(label, bench_iii, iii_queue(file_adapter), on_disk, tree, in_flight=IN_FLIGHT)
            windows = [(f"iii rabbitmq{suffix}", IN_FLIGHT)]
            if NARROW is not None:
                windows.append((f"iii rabbitmq{suffix}, {NARROW}{INFORMATION}", NARROW))
            for label, window in windows:
                if rabbit and wanted(label):
                    with vhost() as vh:
                        rmq = Path(tempfile.mkdtemp(dir=tmp))
                        block = iii_queue({"name": "rabbitmq", "config": {"amqp_url": amqp(vh)}})
                        run(label, bench_iii, block, rmq, tree, rabbit=True, in_flight=window)
        if rabbit and wanted("celery rabbitmq"):
            with vhost() as vh:
                run("celery rabbitmq", bench_celery, amqp(vh))
        if rabbit and wanted("dramatiq rabbitmq"):
            with vhost() as vh:
                run("dramatiq rabbitmq", bench_dramatiq, amqp(vh))
        if rabbit and CONFIRMED and wanted("celery rabbitmq, publisher confirms"):
            with vhost() as vh:
                run("celery rabbitmq, publisher confirms", bench_celery, amqp(vh), True)
        if rabbit and CONFIRMED and wanted("dramatiq rabbitmq, publisher confirms"):
            with vhost() as vh:
                run("dramatiq rabbitmq, publisher confirms", bench_dramatiq, amqp(vh), True)

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
    print_table(results, {label: statistics.median(values) for label, values in cpu.items()})
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main(sys.argv[1:]))
