"""Crash and recovery behaviour of the file-based store (``storage.filelog``).

Torn log tails at every byte offset, leftover/corrupt snapshots, compaction, locking, and a real
SIGKILL of a writer process with ``fsync: always``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from storage import StorageUnavailableError
from storage.filelog import FileKV, encode_name, open_file_kv
from storage.memory import MemoryKV
from storage.records import LOG_MAGIC, scan

REPO = Path(__file__).resolve().parents[3]


def wal_files(directory: Path, name: str) -> list[Path]:
    return sorted(directory.glob(f"{encode_name(name)}.wal-*"))


def matching(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


def events(logs: Sequence[MutableMapping[str, Any]], level: str) -> list[str]:
    return [entry["event"] for entry in logs if entry["log_level"] == level]


async def dump(store: FileKV | MemoryKV) -> dict[str, dict[str, Any]]:
    return {
        scope: dict(zip(await store.list_keys(scope), await store.list(scope), strict=True))
        for scope in await store.list_groups()
    }


async def test_torn_tail_at_every_offset_is_dropped_with_a_warning(tmp_path: Path) -> None:
    source = tmp_path / "source"
    async with open_file_kv(source, name="t", fsync="never") as store:
        for i in range(5):
            await store.set("s", f"k{i}", {"i": i})
        await store.set("s", "last", {"big": "x" * 40})
    [wal] = wal_files(source, "t")
    data = wal.read_bytes()
    start = scan(data, len(LOG_MAGIC)).offsets[-1]
    assert start > len(LOG_MAGIC)

    for cut in range(start, len(data)):
        work = tmp_path / f"cut-{cut}"
        shutil.copytree(source, work)
        os.truncate(work / wal.name, cut)
        with capture_logs() as logs:
            async with open_file_kv(work, name="t") as store:
                assert await store.get("s", "last") is None
                assert await store.list("s") == [{"i": i} for i in range(5)]
                await store.set("s", "after", cut)  # must not land behind garbage
        warned = "kv.log_torn_tail_dropped" in events(logs, "warning")
        assert warned == (cut > start), cut
        async with open_file_kv(work, name="t") as store:
            assert await store.get("s", "after") == cut
            assert len(await store.list("s")) == 6
        shutil.rmtree(work)


async def test_corrupt_record_checksum_drops_the_rest(tmp_path: Path) -> None:
    async with open_file_kv(tmp_path, name="t", fsync="never") as store:
        for i in range(3):
            await store.set("s", f"k{i}", i)
    [wal] = wal_files(tmp_path, "t")
    data = bytearray(wal.read_bytes())
    offsets = scan(bytes(data), len(LOG_MAGIC)).offsets
    data[offsets[1] + 10] ^= 0xFF  # a byte inside the second record's payload
    wal.write_bytes(bytes(data))
    with capture_logs() as logs:
        async with open_file_kv(tmp_path, name="t") as store:
            assert await store.list_keys("s") == ["k0"]
    assert "kv.log_torn_tail_dropped" in events(logs, "warning")


async def test_leftover_snapshot_temp_file_is_ignored(tmp_path: Path) -> None:
    async with open_file_kv(tmp_path, name="t") as store:
        await store.set("s", "k", "kept")
        await store.compact()
        await store.set("s", "k2", "also kept")
    temp = tmp_path / "t.snapshot.tmp"
    temp.write_bytes(b"IIIKVSN1 half-written garbage \x00\xff")
    with capture_logs() as logs:
        async with open_file_kv(tmp_path, name="t") as store:
            assert await dump(store) == {"s": {"k": "kept", "k2": "also kept"}}
    assert not temp.exists()
    assert "kv.stale_snapshot_temp_removed" in events(logs, "warning")


async def test_corrupt_snapshot_is_set_aside_and_what_can_be_read_is_kept(
    tmp_path: Path,
) -> None:
    async with open_file_kv(tmp_path, name="t") as store:
        for i in range(4):
            await store.set("s", f"k{i}", i)
        await store.compact()
    snapshot = tmp_path / "t.snapshot"
    data = bytearray(snapshot.read_bytes())
    data[-3] ^= 0xFF  # inside the end record
    snapshot.write_bytes(bytes(data))
    with capture_logs() as logs:
        async with open_file_kv(tmp_path, name="t") as store:
            assert await store.list("s") == [0, 1, 2, 3]
    assert "kv.snapshot_corrupt" in events(logs, "error")
    assert matching(tmp_path, "t.snapshot.corrupt-*")
    async with open_file_kv(tmp_path, name="t") as store:  # a fresh, clean snapshot now
        assert await store.list("s") == [0, 1, 2, 3]


async def test_torn_log_header_from_a_crash_during_rotation(tmp_path: Path) -> None:
    async with open_file_kv(tmp_path, name="t") as store:
        await store.set("s", "k", 1)
    [wal] = wal_files(tmp_path, "t")
    generation = int(wal.name.rsplit("-", 1)[1])
    (tmp_path / f"t.wal-{generation + 1:010d}").write_bytes(LOG_MAGIC[:3])
    async with open_file_kv(tmp_path, name="t") as store:
        assert await store.get("s", "k") == 1
        await store.set("s", "k", 2)
    async with open_file_kv(tmp_path, name="t") as store:
        assert await store.get("s", "k") == 2
    assert len(wal_files(tmp_path, "t")) == 1


async def test_compaction_preserves_data_and_bounds_the_log(tmp_path: Path) -> None:
    reference = MemoryKV()
    async with open_file_kv(tmp_path, name="t", fsync="never", compact_records=25) as store:
        for i in range(300):
            scope, key = f"scope-{i % 3}", f"k{i % 17}"
            if i % 7 == 0:
                await store.delete(scope, key)
                await reference.delete(scope, key)
            elif i % 5 == 0:
                ops = [{"type": "append", "path": "seen", "value": i}]
                await store.update(scope, key, ops)
                await reference.update(scope, key, ops)
            else:
                await store.set(scope, key, {"i": i})
                await reference.set(scope, key, {"i": i})
            if i % 50 == 0:
                await trio.sleep(0.01)  # let background compactions run
        await store.compact()
        assert await dump(store) == await dump(reference)
        [wal] = wal_files(tmp_path, "t")
        assert wal.stat().st_size == len(LOG_MAGIC)
    async with open_file_kv(tmp_path, name="t") as store:
        assert await dump(store) == await dump(reference)


async def test_writes_during_background_compaction_are_kept(tmp_path: Path) -> None:
    async with open_file_kv(tmp_path, name="t", fsync="interval", compact_records=10) as store:
        async with trio.open_nursery() as nursery:
            for worker in range(4):

                async def writer(worker: int = worker) -> None:
                    for i in range(60):
                        await store.set(f"w{worker}", f"k{i}", i)

                nursery.start_soon(writer)
    async with open_file_kv(tmp_path, name="t") as store:
        for worker in range(4):
            assert await store.list(f"w{worker}") == list(range(60))


async def test_interval_mode_flushes_in_the_background(tmp_path: Path) -> None:
    async with open_file_kv(tmp_path, name="t", fsync="interval", save_interval=0.1) as store:
        await store.set("s", "k", 1)
        assert store._dirty
        await trio.sleep(0.35)
        assert not store._dirty


async def test_one_open_store_per_directory_and_name(tmp_path: Path) -> None:
    async with open_file_kv(tmp_path, name="state") as state:
        with pytest.raises(StorageUnavailableError, match="held by another open store"):
            async with open_file_kv(tmp_path, name="state"):
                pass
        async with open_file_kv(tmp_path, name="stream:x") as other:  # same dir, other name
            await other.set("s", "k", "stream")
        await state.set("s", "k", "state")
    async with open_file_kv(tmp_path, name="state") as state:
        assert await state.get("s", "k") == "state"
    assert (tmp_path / "stream%3Ax.snapshot").exists()


async def test_body_errors_come_out_unwrapped(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        async with open_file_kv(tmp_path, name="t") as store:
            await store.set("s", "k", 1)
            raise KeyError("boom")
    async with open_file_kv(tmp_path, name="t") as store:
        assert await store.get("s", "k") == 1


async def test_cancelled_owner_still_flushes(tmp_path: Path) -> None:
    with trio.move_on_after(0.05):
        async with open_file_kv(tmp_path, name="t", fsync="never") as store:
            await store.set("s", "k", "v")
            await trio.sleep_forever()
    async with open_file_kv(tmp_path, name="t") as store:
        assert await store.get("s", "k") == "v"


CHILD = r"""
import sys
from pathlib import Path

import structlog
import trio

from storage.filelog import open_file_kv

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


async def main() -> None:
    directory, prefix, compact = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    async with open_file_kv(directory, name="crash", fsync="always", compact_records=compact) as kv:
        print("ready", flush=True)
        i = 0
        while True:
            await kv.set("acked", f"{prefix}-{i}", {"i": i, "pad": "x" * (i % 200)})
            print(f"{prefix}-{i}", flush=True)
            i += 1


trio.run(main)
"""


async def test_sigkill_never_loses_an_acknowledged_write(tmp_path: Path) -> None:
    acknowledged: list[str] = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for round_number, compact_every in enumerate((100_000, 50, 7)):
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", CHILD, str(tmp_path), f"r{round_number}", str(compact_every)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
        )
        assert proc.stdout is not None
        output = b""
        try:
            with trio.fail_after(15):
                while b"ready\n" not in output:
                    chunk = await proc.stdout.receive_some()
                    assert chunk, "child exited before it was ready"
                    output += chunk
            with trio.move_on_after(0.3):
                while True:
                    output += await proc.stdout.receive_some()
        finally:
            proc.kill()
            await proc.wait()
        while chunk := await proc.stdout.receive_some():
            output += chunk
        await proc.stdout.aclose()
        lines = output.split(b"\n")[:-1]  # the last piece is incomplete (or empty)
        keys = [line.decode() for line in lines if line.startswith(f"r{round_number}-".encode())]
        assert len(keys) > 10, "the child wrote too little to test anything"
        acknowledged.extend(keys)

        async with open_file_kv(tmp_path, name="crash") as store:
            stored = set(await store.list_keys("acked"))
        missing = [key for key in acknowledged if key not in stored]
        assert not missing, f"round {round_number}: lost {len(missing)} acked writes"


@pytest.mark.parametrize(
    "mode, per_write", [("always", True), ("interval", False), ("never", False)]
)
async def test_fsync_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, per_write: bool
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    async with open_file_kv(tmp_path, name="t", fsync=mode, save_interval=60) as store:  # type: ignore[arg-type]
        monkeypatch.setattr(os, "fsync", counting_fsync)
        for i in range(20):
            await store.set("s", f"k{i}", i)
        await store.delete("s", "k0")
        await store.update("s", "k1", [{"type": "increment", "path": "", "by": 1}])
        assert len(calls) == (22 if per_write else 0)
        calls.clear()
    assert calls  # aclose always fsyncs


async def test_snapshot_of_an_unknown_format_is_refused(tmp_path: Path) -> None:
    from storage.records import SNAPSHOT_MAGIC, frame

    header = frame(b'{"format": 99, "next_log": 0}')
    (tmp_path / "t.snapshot").write_bytes(SNAPSHOT_MAGIC + header + frame(b'["end", 0]'))
    with pytest.raises(StorageUnavailableError, match="format 99"):
        async with open_file_kv(tmp_path, name="t"):
            pass
    assert (tmp_path / "t.snapshot").exists()  # left alone
    # ...and the lock was released.
    (tmp_path / "t.snapshot").unlink()
    async with open_file_kv(tmp_path, name="t"):
        pass
