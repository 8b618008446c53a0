"""File-based key/value store: a checksummed append-only log plus periodic snapshots.

Layout, in the ``file_path`` directory (``<name>`` is the store name, %-encoded as in §1.8, so
the state and stream stores may share one directory):

* ``<name>.snapshot`` — the whole store as of a log generation ``N``: a magic, a header record
  ``{"format": 1, "next_log": N}``, one record per key, then ``["end", <count>]``. Written to
  ``<name>.snapshot.tmp``, fsynced, renamed over the old one, then the directory is fsynced.
* ``<name>.wal-<gen>`` — log generations ``>= N``: a magic, then one record per write
  (``["s", scope, key]`` NUL value-JSON, or ``["d", scope, key]``), see ``storage.records``.
* ``<name>.lock`` — ``flock``-ed while the store is open (one process per store).

Opening replays the snapshot then the logs. A record cut short or failing its checksum (a
crash mid-write) ends the replay of that log with a warning; the store is then compacted at
once, so nothing is ever appended after garbage. A leftover ``.tmp`` is deleted. Compaction
switches writers to a new log generation under the write lock, then writes the snapshot from a
shallow copy of the index in a worker thread and deletes the older logs only after the rename.

``fsync``: ``always`` — every acknowledged write is fsynced before the call returns;
``interval`` — a background task fsyncs every ``save_interval_ms``; ``never`` — only at
compaction and close. Whatever the mode, a crash never leaves an unreadable store, and
``aclose`` always flushes and fsyncs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final, Literal

import orjson
import structlog
import trio

from storage._util import owned_nursery
from storage.errors import StorageError, StorageUnavailableError
from storage.fileio import StoreFiles, acquire_lock, encode_name, fsync_dir, write_all
from storage.memory import MemoryKV
from storage.records import (
    LOG_MAGIC,
    SNAPSHOT_MAGIC,
    decode_entry,
    delete_payload,
    frame,
    scan,
    set_payload,
)

__all__ = ["FileKV", "FsyncMode", "encode_name", "open_file_kv"]

log = structlog.get_logger(__name__)

FsyncMode = Literal["always", "interval", "never"]
DEFAULT_COMPACT_RECORDS: Final = 100_000
DEFAULT_COMPACT_BYTES: Final = 64 * 1024 * 1024
_COMPACT_RETRY_SECONDS: Final = 10.0
_FORMAT: Final = 1


def _is_end(payload: bytes, count: int) -> bool:
    try:
        return bool(orjson.loads(payload) == ["end", count])
    except orjson.JSONDecodeError:
        return False


class FileKV(MemoryKV):
    """``KeyValueStore`` kept in memory and persisted to a write-ahead log (module docstring).

    Open it with ``open_file_kv`` (which owns the background flush/compaction tasks).
    """

    def __init__(
        self,
        directory: Path,
        *,
        name: str = "kv",
        fsync: FsyncMode = "interval",
        save_interval: float = 5.0,
        compact_records: int = DEFAULT_COMPACT_RECORDS,
        compact_bytes: int = DEFAULT_COMPACT_BYTES,
    ) -> None:
        super().__init__()
        self._files = StoreFiles(directory, name)
        self._name = name
        self._fsync_mode: FsyncMode = fsync
        self._save_interval = save_interval
        self._compact_records = compact_records
        self._compact_bytes = compact_bytes
        self._lock_fd: int | None = None
        self._fd = -1
        self._gen = 0
        self._size = 0
        self._records = 0
        self._dirty = False
        self._broken: str | None = None
        self._compact_lock = trio.Lock()
        self._compacting = False
        self._compact_not_before = 0.0
        self._nursery: trio.Nursery | None = None

    @property
    def directory(self) -> Path:
        return self._files.directory

    @property
    def fsync_mode(self) -> FsyncMode:
        return self._fsync_mode

    @property
    def save_interval(self) -> float:
        """Seconds between background fsyncs in ``interval`` mode."""
        return self._save_interval

    # ----------------------------------------------------------------- opening (thread)

    def _open_sync(self) -> None:
        files = self._files
        files.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = acquire_lock(files.lock)
        try:
            self._load_sync()
        except BaseException:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _load_sync(self) -> None:
        files = self._files
        if files.tmp.exists():
            log.warning("kv.stale_snapshot_temp_removed", store=self._name, path=str(files.tmp))
            files.tmp.unlink()
        next_log, clean = self._load_snapshot()
        live: list[tuple[int, Path]] = []
        for gen, path in files.logs():
            if gen < next_log:
                path.unlink()  # already folded into the snapshot
            else:
                live.append((gen, path))
        records = size = 0
        for _gen, path in live:
            ok, records, size = self._replay_log(path)
            clean = clean and ok
        last_gen = live[-1][0] if live else next_log - 1
        if clean and len(live) == 1 and not self._over_threshold(records, size):
            self._gen = last_gen
            self._fd = os.open(live[0][1], os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._size, self._records = size, records
        else:
            gen = max(last_gen + 1, next_log)
            self._fd = self._create_log(gen)
            self._gen, self._size, self._records = gen, len(LOG_MAGIC), 0
            self._finish_compaction(self._data, gen)
        log.debug(
            "kv.file_store_opened",
            store=self._name,
            path=str(files.directory),
            scopes=len(self._data),
            log_generation=self._gen,
        )

    def _load_snapshot(self) -> tuple[int, bool]:
        """Load the snapshot into ``self._data``: ``(next_log, clean)``."""
        path = self._files.snapshot
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0, True
        problem: str | None = None
        next_log = 0
        result = scan(data, len(SNAPSHOT_MAGIC))
        payloads = result.payloads
        if data[: len(SNAPSHOT_MAGIC)] != SNAPSHOT_MAGIC:
            problem, payloads = "bad magic", []
        elif result.problem:
            problem = result.problem
        body = payloads[1:]
        try:
            header = orjson.loads(payloads[0]) if payloads else {}
            version = header.get("format")
            next_log = int(header["next_log"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problem = problem or f"bad header: {exc}"
        else:
            if version != _FORMAT:  # intact but not ours to read: refuse rather than discard
                raise StorageUnavailableError(
                    f"{path} has snapshot format {version!r}; this version reads format {_FORMAT}"
                )
        if body and _is_end(body[-1], len(body) - 1):
            body = body[:-1]
        else:
            problem = problem or "missing end record"
        for payload in body:
            try:
                op, scope, key, value = decode_entry(payload)
            except ValueError as exc:
                problem = problem or f"undecodable entry: {exc}"
                continue
            if op == "s" and value is not None:
                self._put(scope, key, value)
        if problem is None:
            return next_log, True
        aside = self._files.set_aside(path)
        log.error(
            "kv.snapshot_corrupt",
            store=self._name,
            path=str(path),
            moved_to=str(aside),
            reason=problem,
            recovered_keys=sum(len(items) for items in self._data.values()),
        )
        return next_log, False

    def _replay_log(self, path: Path) -> tuple[bool, int, int]:
        """Apply one log to ``self._data``: ``(clean, records, good_size)``."""
        data = path.read_bytes()
        if len(data) < len(LOG_MAGIC) and LOG_MAGIC.startswith(data):
            # Crashed while creating this log: it holds nothing; compaction replaces it.
            if data:
                log.warning("kv.log_header_torn", store=self._name, path=str(path))
            return False, 0, 0
        if data[: len(LOG_MAGIC)] != LOG_MAGIC:
            aside = self._files.set_aside(path)
            log.error("kv.log_unreadable", store=self._name, path=str(path), moved_to=str(aside))
            return False, 0, 0
        result = scan(data, len(LOG_MAGIC))
        for payload in result.payloads:
            try:
                op, scope, key, value = decode_entry(payload)
            except ValueError as exc:
                log.warning(
                    "kv.log_entry_skipped", store=self._name, path=str(path), reason=str(exc)
                )
                continue
            if op == "s" and value is not None:
                self._put(scope, key, value)
            else:
                self._drop(scope, key)
        if result.problem:
            log.warning(
                "kv.log_torn_tail_dropped",
                store=self._name,
                path=str(path),
                offset=result.end,
                dropped_bytes=len(data) - result.end,
                reason=result.problem,
            )
            return False, len(result.payloads), result.end
        return True, len(result.payloads), result.end

    # ------------------------------------------------------------ log files (thread)

    def _create_log(self, gen: int) -> int:
        path = self._files.log(gen)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        try:
            write_all(fd, LOG_MAGIC)
            os.fsync(fd)
            fsync_dir(self._files.directory)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _rotate_sync(self, gen: int) -> int:
        new_fd = self._create_log(gen)
        old_fd = self._fd
        try:
            os.fsync(old_fd)  # older logs stay a complete prefix even on power loss
        except OSError as exc:
            log.warning("kv.fsync_failed", store=self._name, error=str(exc))
        os.close(old_fd)
        return new_fd

    def _finish_compaction(self, data: dict[str, dict[str, bytes]], gen: int) -> None:
        """Write the snapshot of ``data`` (= all logs before ``gen``), then drop those logs."""
        files = self._files
        count = 0
        with open(files.tmp, "wb", buffering=1 << 20) as out:
            out.write(SNAPSHOT_MAGIC)
            out.write(frame(orjson.dumps({"format": _FORMAT, "next_log": gen})))
            for scope, items in data.items():
                for key, encoded in items.items():
                    out.write(frame(set_payload(scope, key, encoded)))
                    count += 1
            out.write(frame(orjson.dumps(["end", count])))
            out.flush()
            os.fsync(out.fileno())
        os.replace(files.tmp, files.snapshot)
        fsync_dir(files.directory)
        for old_gen, path in files.logs():
            if old_gen < gen:
                path.unlink(missing_ok=True)
        log.debug("kv.compacted", store=self._name, keys=count, log_generation=gen)

    # ------------------------------------------------------------------- writing

    def _check_writable(self) -> None:
        self._check_open()
        if self._broken is not None:
            raise StorageUnavailableError(f"store {self._name!r} is unusable: {self._broken}")

    async def _persist_set(self, scope: str, key: str, encoded: bytes) -> None:
        await self._append(set_payload(scope, key, encoded))

    async def _persist_delete(self, scope: str, key: str) -> None:
        await self._append(delete_payload(scope, key))

    async def _append(self, payload: bytes) -> None:
        """Append one record (caller holds the write lock). Small writes go to the page cache
        inline; fsync runs in a worker thread."""
        self._check_writable()
        try:
            record = frame(payload)
        except ValueError as exc:
            raise StorageError(str(exc)) from exc
        try:
            write_all(self._fd, record)
        except OSError as exc:
            self._undo_partial_write()
            raise StorageUnavailableError(f"cannot write the log of {self._name!r}: {exc}") from exc
        self._size += len(record)
        self._records += 1
        if self._fsync_mode == "always":
            try:
                await trio.to_thread.run_sync(os.fsync, self._fd)
            except OSError as exc:
                self._broken = f"fsync failed: {exc}"
                log.error("kv.fsync_failed", store=self._name, error=str(exc))
                raise StorageUnavailableError(self._broken) from exc
        else:
            self._dirty = True
        self._maybe_compact()

    def _undo_partial_write(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as exc:
            self._broken = f"cannot repair the log after a failed write: {exc}"
            log.error("kv.log_repair_failed", store=self._name, error=str(exc))

    def _over_threshold(self, records: int, size: int) -> bool:
        return records >= self._compact_records or size >= self._compact_bytes

    def _maybe_compact(self) -> None:
        if (
            self._nursery is not None
            and not self._compacting
            and self._over_threshold(self._records, self._size)
            and trio.current_time() >= self._compact_not_before
        ):
            self._compacting = True
            self._nursery.start_soon(self._background_compact)

    async def _background_compact(self) -> None:
        try:
            await self.compact()
        except StorageError as exc:
            if not self._closed:
                log.error("kv.compaction_failed", store=self._name, error=str(exc))
        except Exception as exc:  # a background task must not take the store down
            log.error("kv.compaction_failed", store=self._name, error=repr(exc))
            self._compact_not_before = trio.current_time() + _COMPACT_RETRY_SECONDS
        finally:
            self._compacting = False

    async def compact(self) -> None:
        """Fold the log into a new snapshot now."""
        async with self._compact_lock:
            async with self._lock:
                self._check_writable()
                gen = self._gen + 1
                try:
                    self._fd = await trio.to_thread.run_sync(self._rotate_sync, gen)
                except OSError as exc:
                    self._compact_not_before = trio.current_time() + _COMPACT_RETRY_SECONDS
                    raise StorageUnavailableError(f"cannot start a new log: {exc}") from exc
                self._gen, self._size, self._records, self._dirty = gen, len(LOG_MAGIC), 0, False
                data = {scope: dict(items) for scope, items in self._data.items()}
            try:
                await trio.to_thread.run_sync(self._finish_compaction, data, gen)
            except OSError as exc:
                self._compact_not_before = trio.current_time() + _COMPACT_RETRY_SECONDS
                raise StorageUnavailableError(f"cannot write the snapshot: {exc}") from exc

    async def flush(self) -> None:
        """fsync writes not yet on disk (no-op when there are none)."""
        async with self._lock:
            if self._closed or not self._dirty or self._broken is not None:
                return
            fd = os.dup(self._fd)
            self._dirty = False
        try:
            await trio.to_thread.run_sync(os.fsync, fd)
        except OSError as exc:
            self._broken = f"fsync failed: {exc}"
            log.error("kv.fsync_failed", store=self._name, error=str(exc))
            raise StorageUnavailableError(self._broken) from exc
        finally:
            os.close(fd)

    async def _flush_loop(self) -> None:
        while not self._closed:
            await trio.sleep(self._save_interval)
            try:
                await self.flush()
            except StorageError:
                pass  # logged; writes now fail loudly

    async def aclose(self) -> None:
        async with self._compact_lock:
            async with self._lock:
                if self._closed:
                    return
                self._closed = True
                fd, self._fd = self._fd, -1
            try:
                await trio.to_thread.run_sync(self._close_sync, fd)
            finally:
                self._release_lock()

    def _close_sync(self, fd: int) -> None:
        try:
            if fd >= 0 and self._broken is None:
                os.fsync(fd)
        except OSError as exc:
            log.error("kv.fsync_failed", store=self._name, error=str(exc))
        finally:
            if fd >= 0:
                os.close(fd)


@asynccontextmanager
async def open_file_kv(
    directory: Path,
    *,
    name: str = "kv",
    fsync: FsyncMode = "interval",
    save_interval: float = 5.0,
    compact_records: int = DEFAULT_COMPACT_RECORDS,
    compact_bytes: int = DEFAULT_COMPACT_BYTES,
) -> AsyncIterator[FileKV]:
    """Open (replaying snapshot + log) the store in ``directory``; flush and close it on exit."""
    store = FileKV(
        directory,
        name=name,
        fsync=fsync,
        save_interval=save_interval,
        compact_records=compact_records,
        compact_bytes=compact_bytes,
    )
    await trio.to_thread.run_sync(store._open_sync)
    try:
        async with owned_nursery() as nursery:
            store._nursery = nursery
            if fsync == "interval":
                nursery.start_soon(store._flush_loop)
            try:
                yield store
            finally:
                with trio.CancelScope(shield=True):
                    await store.aclose()
    finally:
        store._release_lock()
