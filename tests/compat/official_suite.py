"""``make sdk-suite``: the official Python SDK's own tests, run against this engine.

Nothing of the SDK's test code lives in this repository. The sdist of each pinned ``iii-sdk``
is fetched with pip at run time and its ``tests/`` unpacked into a work directory outside the
tree (default ``$TMPDIR/iii-sdk-suite``), where pytest runs them in a scratch venv that has that
SDK and the suite's test dependencies. The suite talks to one ``iii-supervisor up`` started from
this tree with the SDK fixture's worker list (WORKERS.md §1.4: a plain listener, the RBAC
listener of PROTOCOL.md §13.10, stream, state, http, pubsub, observability, queue,
http-functions, cron) on free ports, passed to the tests through the variables their
``conftest.py`` reads (``III_URL``, ``III_HTTP_URL``, ``III_RBAC_WORKER_URL``).

    python -m tests.compat.official_suite [--sdk 0.23.0 --sdk 0.25.0] [--backends services]
                                          [--work DIR] [FILE ...]

``--backends services`` puts stream, state and pub/sub on Redis and the queue on RabbitMQ
(127.0.0.1). Prints one row per test file and exits 1 when any test failed or errored.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from tests.integration.rbac.conftest import suite_listener
from tests.support import EngineProcess, free_port, sdk_client, wait_port

SDKS = ("0.23.0", "0.25.0")
TEST_DEPS = ("pytest>=8", "pytest-asyncio>=0.23", "pytest-timeout>=2.3", "aiohttp>=3.9")
# Files of the sdist that read data the sdist does not ship (upstream's sdk/fixtures/...);
# both test the SDK's own codecs, not the engine.
NEEDS_UPSTREAM_FIXTURES = ("test_filter_conformance.py", "test_observe_protocol_fixtures.py")
# test_api_triggers streams `<root>/test-assets/handbook.pdf` up and down (skipped without it);
# any bytes do, under the 16 MiB request-body limit the suite assumes.
ASSET_BYTES = 3 * 1024 * 1024
# The functions the suite calls right after connecting: the engine is ready when they exist.
READY_FUNCTIONS = frozenset({"state::set", "stream::set", "publish", "iii::durable::publish"})


def fixture_config(ports: dict[str, int], services: bool) -> dict[str, Any]:
    """The SDK fixture's workers (WORKERS.md §1.4), in this engine's config form."""
    redis = {"name": "redis", "config": {"redis_url": "redis://127.0.0.1:6379"}}

    def kv(path: str) -> dict[str, Any]:
        return {"name": "kv", "config": {"store_method": "file_based", "file_path": path}}

    rbac = suite_listener(ports["rbac"])
    return {
        "workers": [
            {"name": "iii-worker-manager", "config": {"host": "127.0.0.1", "port": ports["ws"]}},
            {"name": "iii-worker-manager#rbac", "config": rbac["config"]},
            {
                "name": "iii-stream",
                "config": {
                    "host": "127.0.0.1",
                    "port": ports["stream"],
                    "adapter": redis if services else kv("stream_store"),
                },
            },
            {"name": "iii-state", "config": {"adapter": redis if services else kv("state_store")}},
            {
                "name": "iii-http",
                "config": {"host": "127.0.0.1", "port": ports["http"], "default_timeout": 30000},
            },
            {"name": "iii-pubsub", "config": {"adapter": redis if services else {"name": "local"}}},
            {"name": "iii-observability", "config": {"exporter": "memory"}},
            {
                "name": "iii-queue",
                "config": {
                    "adapter": (
                        {"name": "rabbitmq", "config": {"amqp_url": "amqp://127.0.0.1:5672"}}
                        if services
                        else {"name": "builtin"}
                    ),
                },
            },
            {
                "name": "iii-http-functions",
                "config": {
                    "security": {
                        "url_allowlist": ["localhost", "127.0.0.1"],
                        "block_private_ips": False,
                        "require_https": False,
                    }
                },
            },
            {"name": "iii-cron", "config": {"adapter": {"name": "kv"}}},
        ]
    }


def scratch_venv(work: Path, sdk: str) -> Path:
    """A venv with ``iii-sdk==sdk`` and the suite's test dependencies (kept between runs)."""
    venv = work / f"venv-{sdk}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", f"iii-sdk=={sdk}", *TEST_DEPS]
        subprocess.run(pip, check=True)
        stamp.touch()
    return python


def unpack_tests(work: Path, sdk: str) -> Path:
    """The sdist's ``tests/`` under ``work/<sdk>/sdk/packages/python/`` (so the suite's
    ``parents[4] / "test-assets"`` is ``work/<sdk>/test-assets``); returns that folder."""
    dist = work / "dist"
    archive = dist / f"iii_sdk-{sdk}.tar.gz"
    if not archive.exists():
        download = ["pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
        cmd = [sys.executable, "-m", *download, f"iii-sdk=={sdk}", "-d", str(dist)]
        subprocess.run(cmd, check=True)
    root = work / sdk
    tests = root / "sdk" / "packages" / "python" / "tests"
    if not tests.exists():
        prefix = f"iii_sdk-{sdk}/tests/"
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith(prefix):
                    target = tests / member.name[len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None
                    target.write_bytes(source.read())
    asset = root / "test-assets" / "handbook.pdf"
    if not asset.exists():
        asset.parent.mkdir(parents=True, exist_ok=True)
        block = b"".join(hashlib.sha256(bytes([n])).digest() for n in range(256))
        asset.write_bytes(b"%PDF-1.4\n" + block * (ASSET_BYTES // len(block)) + b"\n%%EOF\n")
    return tests


def wait_ready(url: str, timeout: float = 60.0) -> None:
    client = sdk_client(url, "sdk-suite-probe")
    try:
        deadline = time.monotonic() + timeout
        while True:
            listed = client.trigger({"function_id": "engine::functions::list", "payload": {}})
            ids = {f["function_id"] for f in listed["functions"]}
            if READY_FUNCTIONS <= ids:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"still missing after {timeout}s: {READY_FUNCTIONS - ids}")
            time.sleep(0.2)
    finally:
        client.shutdown()


def run_suite(work: Path, sdk: str, files: list[str], services: bool) -> dict[str, Counter[str]]:
    python = scratch_venv(work, sdk)
    tests = unpack_tests(work, sdk)
    ports = {name: free_port() for name in ("ws", "rbac", "http", "stream")}
    engine_dir = Path(tempfile.mkdtemp(prefix=f"engine-{sdk}-", dir=work))
    engine = EngineProcess(fixture_config(ports, services), engine_dir).start()
    try:
        for port in (ports["rbac"], ports["http"], ports["stream"]):
            wait_port(port, 60.0, engine.proc)
        wait_ready(engine.url)
        report = engine_dir / "junit.xml"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OTEL_ENABLED")}
        env |= {
            "III_URL": engine.url,
            "III_HTTP_URL": f"http://127.0.0.1:{ports['http']}",
            "III_RBAC_WORKER_URL": f"ws://127.0.0.1:{ports['rbac']}",
        }
        ignored = [f"--ignore={name}" for name in NEEDS_UPSTREAM_FIXTURES]
        cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=120"]
        cmd += ["-W", "ignore::DeprecationWarning", f"--junitxml={report}", *ignored]
        subprocess.run([*cmd, *(files or ["."])], cwd=tests, env=env, check=False)
        return tally(report)
    finally:
        engine.stop()
        print(f"engine log: {engine.log_path}")


def tally(report: Path) -> dict[str, Counter[str]]:
    """``{file: Counter(passed=, failed=, error=, skipped=)}`` from a JUnit XML report."""
    rows: dict[str, Counter[str]] = {}
    for case in ET.parse(report).iter("testcase"):
        module = case.get("classname", "?").split(".")[0]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag == "failure" else child.tag
        rows.setdefault(f"{module}.py", Counter())[outcome] += 1
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdk", action="append", choices=SDKS, help="default: both")
    parser.add_argument("--backends", choices=("local", "services"), default="local")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "iii-sdk-suite")
    parser.add_argument("files", nargs="*", help="test files of the suite (default: all)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    bad = 0
    for sdk in args.sdk or SDKS:
        rows = run_suite(args.work.resolve(), sdk, args.files, args.backends == "services")
        print(f"\niii-sdk {sdk}, backends {args.backends}")
        print(f"{'file':<48} {'passed':>6} {'failed':>6} {'error':>6} {'skipped':>7}")
        for name, c in sorted(rows.items()):
            cells = f"{c['passed']:>6} {c['failed']:>6} {c['error']:>6} {c['skipped']:>7}"
            print(f"{name:<48} {cells}")
            bad += c["failed"] + c["error"]
        total = sum(rows.values(), Counter())
        print(f"{'total':<48} {total['passed']:>6} {total['failed']:>6} {total['error']:>6}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
