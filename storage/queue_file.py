"""The builtin broker's journal on disk (``store_method: file_based``, WORKERS.md §7.6, §13).

Layout, in the ``file_path`` directory:

* ``queue.journal`` — a magic, then checksummed records (``storage.records`` framing), each an
  orjson array: ``["q", spec]`` a durable subscriber's queue, ``["e", job]`` enqueued,
  ``["a", id]`` acked, ``["f", id, attempts, due, error]`` failed and delayed,
  ``["x", id, attempts, error, failed_at]`` dead-lettered, ``["r", id]`` redriven,
  ``["d", id]`` discarded, and in a compacted file ``["j", job]`` (a job as it stood).
* ``queue.journal.tmp`` — a compaction being written; renamed over the journal when complete.
* ``queue.lock`` — ``flock``-ed while open (one process per journal).

Opening replays the journal into a fresh ``QueueCore``; a record cut short or failing its
checksum (a kill mid-write) ends the replay there, and the journal is compacted at once so
nothing is appended after garbage. There is no *active* state on disk: a job that was in flight
when the process died is simply waiting again, and is delivered again (at-least-once; this is
the fix §13 recommends for upstream's stranded active jobs).

Writes: the broker notes records as it changes the core; one writer task writes what has
accumulated in one ``write`` (group commit) and then wakes every ``commit`` waiting on it, so an
enqueue is acknowledged only once its record is in the file. A batch that is not synced and
is at most ``INLINE_WRITE_MAX`` bytes is written from the trio thread (a copy into the page
cache costs less than the hop to a worker thread); ``fsync: always`` batches and larger ones
are written in a worker thread. That survives a kill of the
process. ``fsync``: ``always`` syncs each batch before waking the waiters (power-cut safe),
``interval`` syncs every ``save_interval_ms``, ``never`` only at compaction and close. When the
journal holds far more records than live jobs it is rewritten from the core (compaction).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import structlog
import trio

from storage._util import owned_nursery
from storage.errors import StorageError, StorageUnavailableError
from storage.fileio import acquire_lock, fsync_dir, write_all
from storage.queue_core import Job, QueueCore
from storage.queue_memory import BuiltinBroker, Stored, spec_from_record
from storage.records import frame, scan

__all__ = ["JOURNAL_MAGIC", "FileJournal", "open_file_broker", "replay"]

log = structlog.get_logger(__name__)

JOURNAL_MAGIC: Final = b"IIIQJRN1"
COMPACT_MIN_RECORDS: Final = 50_000  # below this a journal is never rewritten at run time
COMPACT_RATIO: Final = 4  # ... and above it, when it has this many records per live job
INLINE_WRITE_MAX: Final = 256 * 1024  # a batch up to this size, not synced, is written inline

FsyncMode = Literal["always", "interval", "never"]


def replay(payloads: list[bytes]) -> tuple[list[Job], list[dict[str, Any]]]:
    """The jobs (in the order they must be restored) and subscriber specs a journal holds."""
    jobs: dict[str, dict[str, Any]] = {}
    specs: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        entry = orjson.loads(payload)
        op = entry[0]
        if op in ("e", "j"):
            record = entry[1]
            jobs.pop(record["id"], None)
            jobs[record["id"]] = record
        elif op == "q":
            specs[entry[1]["name"]] = entry[1]
        elif op in ("a", "d"):
            jobs.pop(entry[1], None)
        elif entry[1] in jobs:
            record = jobs[entry[1]]
            if op == "f":
                record.update(state="delayed", attempts=entry[2], due=entry[3], error=entry[4])
            elif op == "x":
                record.update(state="dead", attempts=entry[2], error=entry[3], failed_at=entry[4])
            elif op == "r":
                del jobs[entry[1]]  # redriven jobs go to the back of the line
                record.update(state="waiting", attempts=0, error=None, failed_at=None)
                jobs[entry[1]] = record
    return [Job.from_record(r) for r in jobs.values()], list(specs.values())


class FileJournal:
    """The journal file of one builtin broker (module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: FsyncMode = "interval",
        save_interval: float = 5.0,
        name: str = "queue",
    ) -> None:
        self.directory = directory
        self.path = directory / f"{name}.journal"
        self.tmp = directory / f"{name}.journal.tmp"
        self.lock_path = directory / f"{name}.lock"
        self.fsync = fsync
        self.save_interval = save_interval
        self._fd = -1
        self._lock_fd = -1
        self._pending: list[bytes] = []
        self._pending_done = trio.Event()  # set when the records now pending are written
        self._pending_calls: list[Stored] = []  # after_write callbacks of the pending records
        self._have_pending = trio.Event()
        self._records = 0
        self._dirty = False
        self._snapshot: Callable[[], list[bytes]] | None = None
        self._live: Callable[[], int] = lambda: 0
        self._failure: StorageError | None = None
        self._closed = False

    # -- opening ------------------------------------------------------------------------

    def open_sync(self) -> tuple[list[bytes], bool]:
        """Lock, read and reopen the journal for appending: its records, and whether it must
        be compacted before use (a torn or checksum-failing tail)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = acquire_lock(self.lock_path)
            self.tmp.unlink(missing_ok=True)
            data = self.path.read_bytes() if self.path.exists() else b""
        except OSError as exc:
            raise StorageUnavailableError(f"cannot open the queue journal: {exc}") from exc
        if not data:
            return [], True
        if not data.startswith(JOURNAL_MAGIC):
            raise StorageUnavailableError(f"{self.path} is not a queue journal")
        result = scan(data, len(JOURNAL_MAGIC))
        if result.problem:
            log.warning("queue journal tail dropped", path=str(self.path), reason=result.problem)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._records = len(result.payloads)
        return result.payloads, result.problem is not None

    def attach(self, snapshot: Callable[[], list[bytes]], live: Callable[[], int]) -> None:
        """How to get the records a compacted journal starts with (the broker's state), and
        how many jobs are live (compaction pays off when records far outnumber them)."""
        self._snapshot = snapshot
        self._live = live

    # -- writing ------------------------------------------------------------------------

    def note(self, entry: list[Any]) -> None:
        if self._closed:
            raise StorageError("the queue journal is closed")
        self._pending.append(frame(orjson.dumps(entry)))
        self._have_pending.set()

    async def commit(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._pending:
            await self._pending_done.wait()
        if self._failure is not None:
            raise self._failure

    def after_write(self, callback: Stored) -> None:
        if self._failure is not None or not self._pending:
            callback(self._failure)
        else:
            self._pending_calls.append(callback)

    async def writer(self) -> None:
        """Write what has accumulated, batch after batch, until cancelled."""
        while True:
            await self._have_pending.wait()
            await self._write_batch()

    async def _write_batch(self) -> None:
        batch, done, calls = self._pending, self._pending_done, self._pending_calls
        self._pending, self._pending_done, self._pending_calls = [], trio.Event(), []
        self._have_pending = trio.Event()
        # Shielded: once taken out of ``_pending`` a batch must reach the file, even when the
        # writer is being cancelled (aclose would not see it any more).
        with trio.CancelScope(shield=True):
            await self._write_taken(batch, done)
        for callback in calls:
            try:
                callback(self._failure)
            except Exception:  # one caller's bug must not stop the journal's writer
                log.exception("queue journal callback failed")

    async def _write_taken(self, batch: list[bytes], done: trio.Event) -> None:
        try:
            if self._should_compact(len(batch)):
                await self.compact()  # the snapshot already holds this batch's changes
            elif batch:
                data = b"".join(batch)
                sync = self.fsync == "always"
                if sync or len(data) > INLINE_WRITE_MAX:
                    await trio.to_thread.run_sync(self._write_sync, data, sync)
                else:  # into the page cache: cheaper here than a hop to a worker thread
                    self._write_sync(data, False)
                self._records += len(batch)
                self._dirty = not sync
        except OSError as exc:
            self._failure = StorageUnavailableError(f"queue journal write failed: {exc}")
            log.error("queue journal write failed", error=str(exc))
        finally:
            done.set()

    def _write_sync(self, data: bytes, sync: bool) -> None:
        write_all(self._fd, data)
        if sync:
            os.fsync(self._fd)

    def _should_compact(self, adding: int) -> bool:
        if self._snapshot is None:
            return False
        records = self._records + adding
        return records >= COMPACT_MIN_RECORDS and records >= COMPACT_RATIO * self._live()

    async def compact(self) -> None:
        """Rewrite the journal from the broker's state (taken now, in the trio thread)."""
        assert self._snapshot is not None
        records = self._snapshot()
        await trio.to_thread.run_sync(self._compact_sync, records)
        self._records = len(records)
        self._dirty = False

    def _compact_sync(self, records: list[bytes]) -> None:
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            write_all(fd, JOURNAL_MAGIC + b"".join(frame(r) for r in records))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.tmp, self.path)
        fsync_dir(self.directory)
        old, self._fd = self._fd, os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if old >= 0:
            os.close(old)

    async def sync_loop(self) -> None:
        """``fsync: interval``: sync what was written every ``save_interval``."""
        while True:
            await trio.sleep(self.save_interval)
            if self._dirty and self._fd >= 0:
                self._dirty = False
                try:
                    await trio.to_thread.run_sync(os.fsync, self._fd)
                except OSError as exc:  # a compaction swapped the file meanwhile: it synced
                    log.debug("queue journal sync skipped", error=str(exc))

    async def aclose(self) -> None:
        """Write what is pending, sync, close, unlock. Idempotent."""
        if self._closed:
            return
        with trio.CancelScope(shield=True):
            if self._pending:
                await self._write_batch()
            self._closed = True
            await trio.to_thread.run_sync(self._close_sync)

    def _close_sync(self) -> None:
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _snapshot_of(broker: BuiltinBroker) -> Callable[[], list[bytes]]:
    def snapshot() -> list[bytes]:
        out = [orjson.dumps(["q", spec]) for spec in broker.spec_records()]
        out += [orjson.dumps(["j", job.record()]) for job in broker.core.jobs()]
        return out

    return snapshot


@asynccontextmanager
async def open_file_broker(
    directory: Path,
    *,
    fsync: FsyncMode = "interval",
    save_interval: float = 5.0,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[BuiltinBroker]:
    """A builtin broker whose jobs are journaled in ``directory`` and restored from it."""
    journal = FileJournal(directory, fsync=fsync, save_interval=save_interval)
    payloads, torn = await trio.to_thread.run_sync(journal.open_sync)
    try:
        jobs, specs = replay(payloads)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        await journal.aclose()
        raise StorageUnavailableError(f"{journal.path}: unreadable record: {exc}") from exc
    core = QueueCore()
    for job in jobs:
        core.restore(job)
    broker = BuiltinBroker(
        core,
        journal=journal,
        specs={s["name"]: spec_from_record(s) for s in specs},
        **({} if clock is None else {"clock": clock}),
    )
    journal.attach(_snapshot_of(broker), core.__len__)
    if torn or len(payloads) > COMPACT_RATIO * max(len(jobs), 1):
        await journal.compact()
    if jobs:
        log.info("queue journal restored", jobs=len(jobs), path=str(journal.path))
    try:
        async with owned_nursery() as nursery:
            nursery.start_soon(journal.writer)
            if fsync == "interval":
                nursery.start_soon(journal.sync_loop)
            nursery.start_soon(broker.pump)
            yield broker
    finally:
        await journal.aclose()
