"""What the observe scenarios share: a prelude for SDK 0.25 scenario scripts (several workers
in one process, a recorder of what targets receive, helpers to wait) and the reader of the
lines they print.

A scenario script prints ``CHECK {"key": ..., "value": ...}`` lines; the test module runs it
once (module fixture) and each test asserts on the keys of its behaviour.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support import EngineProcess, WorkerProcess, require_sdk025, wait_for

PRELUDE = r'''
import json, os, sys, threading, time, traceback
from iii import InitOptions, ObserveHooks, ObserveRejection, register_worker

URL = os.environ["III_URL"]
WORKERS = []


def worker(name, url=None, **kw):
    w = register_worker(
        url or URL,
        InitOptions(worker_name=name, otel={"enabled": False}, enable_metrics_reporting=False, **kw),
    )
    WORKERS.append(w)
    return w


def check(key, value):
    print("CHECK " + json.dumps({"key": key, "value": value}, default=str), flush=True)


def wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(0.05)
    return None


class Recorder:
    """Targets that remember what each activation brought."""

    def __init__(self, w):
        self.w = w
        self.got = {}
        self.lock = threading.Lock()

    def target(self, fid, answer=None):
        def handler(data, metadata=None):
            ctx = self.w.current_invocation()
            row = {
                "data": data,
                "metadata": metadata,
                "depth": ctx.observe_depth if ctx else None,
                "caller": ctx.caller if ctx else None,
                "activation": ctx.activation if ctx else None,
                "invocation_id": ctx.invocation_id if ctx else None,
            }
            with self.lock:
                self.got.setdefault(fid, []).append(row)
            return answer(data) if answer else None

        self.w.register_function(fid, handler)

    def of(self, fid):
        with self.lock:
            return list(self.got.get(fid, []))


def registered(w, *fids):
    """Wait until the engine lists every id (a routed call then finds them)."""

    def listed():
        out = w.trigger({"function_id": "engine::functions::list", "payload": {}})
        ids = {f["function_id"] for f in out.get("functions", [])}
        return all(f in ids for f in fids)

    return wait(listed, 15)


def state_of(handle, timeout=10.0):
    try:
        handle.ready(timeout)
    except ObserveRejection:
        pass
    except TimeoutError:
        pass
    reason = handle.reason
    return {"state": handle.state, "reason": dict(reason) if reason else None}


def finish():
    print("DONE", flush=True)
    for w in WORKERS:
        try:
            w.shutdown()
        except Exception:
            pass
    os._exit(0)


def main(body):
    try:
        body()
    except Exception:
        traceback.print_exc()
        print("FAILED", flush=True)
    finish()
'''


class Scenario:
    """One scenario script run to its end against an engine; its checks by key."""

    def __init__(self, source: str, engine: EngineProcess, tmp: Path, name: str, **env: str):
        self.worker = WorkerProcess(
            PRELUDE + source, tmp, engine.url, name, python=require_sdk025(), **env
        )
        self.checks: dict[str, Any] = {}

    def run(self, timeout: float = 60.0) -> Scenario:
        try:
            wait_for(lambda: self._ended(), timeout=timeout, interval=0.1)
        finally:
            self.worker.stop()
        for line in self.worker.output().splitlines():
            if line.startswith("CHECK "):
                row = json.loads(line[len("CHECK ") :])
                self.checks[row["key"]] = row["value"]
        return self

    def _ended(self) -> bool:
        text = self.worker.output()
        return "\nDONE" in text or text.startswith("DONE") or "FAILED" in text

    def __getitem__(self, key: str) -> Any:
        if key not in self.checks:
            raise AssertionError(f"scenario recorded no {key!r}; output:\n{self.worker.output()}")
        return self.checks[key]
