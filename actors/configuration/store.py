"""The ``fs`` adapter of the configuration worker (WORKERS.md §2.1): one YAML file per entry,
``<directory>/<id>.yaml`` with the keys ``id``, ``name``, ``description``, ``value`` and
``metadata`` (only when present). The JSON Schema is never written: owners re-register it on
every boot. Each write is atomic and durable (temp file, fsync, rename, fsync of the directory),
so a kill at any moment leaves either the old or the new file. The methods block; call them
from a worker thread.
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path
from typing import Any, Final

import attrs
import orjson
import structlog
import yaml

__all__ = ["ID_PATTERN", "Entry", "FsStore", "StoreError"]

log = structlog.get_logger("configuration.store")

ID_PATTERN: Final = re.compile(r"[a-z0-9_-]{1,64}")


class StoreError(Exception):
    """A write that did not reach the disk (reported as ``ADAPTER_ERROR``)."""


@attrs.define
class Entry:
    """One configuration entry. ``schema`` is known only after its owner registered it this
    session; ``metadata`` ``None`` means absent."""

    id: str
    name: str
    description: str
    value: Any = None
    metadata: Any = None
    schema: Any = None

    def persisted(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "value": self.value,
        }
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out

    def summary(self) -> dict[str, Any]:
        """The ``list``/``schema`` shape: no value."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "schema": self.schema,
        }
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


def _jsonable(node: Any) -> Any:
    """YAML scalars JSON has no word for (dates from hand edits) become strings."""
    if isinstance(node, dict):
        return {str(k): _jsonable(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_jsonable(v) for v in node]
    if isinstance(node, datetime.date | datetime.datetime):
        return node.isoformat()
    if isinstance(node, bytes):
        return node.decode("utf-8", "replace")
    return node


class FsStore:
    """Entries as YAML files in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, entry_id: str) -> Path:
        return self.directory / f"{entry_id}.yaml"

    def load(self) -> dict[str, Entry]:
        """Every readable entry; files that do not parse are skipped with a warning."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("*.yaml.tmp"):
            stale.unlink(missing_ok=True)
        entries: dict[str, Entry] = {}
        for path in sorted(self.directory.glob("*.yaml")):
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8"))
                entry = self._entry(path, raw)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                log.warning("configuration file skipped", path=str(path), error=str(exc))
                continue
            entries[entry.id] = entry
        return entries

    @staticmethod
    def _entry(path: Path, raw: Any) -> Entry:
        if not isinstance(raw, dict):
            raise ValueError("expected a mapping with id, name, description, value")
        raw = _jsonable(raw)
        entry_id = raw.get("id", path.stem)
        if not isinstance(entry_id, str) or not ID_PATTERN.fullmatch(entry_id):
            raise ValueError(f"invalid id {entry_id!r}")
        if entry_id != path.stem:
            raise ValueError(f"id {entry_id!r} does not match the file name")
        name, description = raw.get("name", entry_id), raw.get("description", "")
        if not isinstance(name, str) or not isinstance(description, str):
            raise ValueError("name and description must be strings")
        orjson.dumps(raw.get("value"))  # must be representable as JSON
        return Entry(entry_id, name, description, raw.get("value"), raw.get("metadata"))

    def write(self, entry: Entry) -> None:
        text = yaml.safe_dump(entry.persisted(), sort_keys=False, allow_unicode=True)
        self._atomic_write(self.path(entry.id), text.encode("utf-8"))

    def remove(self, entry_id: str) -> None:
        try:
            self.path(entry_id).unlink(missing_ok=True)
            self._fsync_directory()
        except OSError as exc:
            raise StoreError(f"cannot delete {self.path(entry_id)}: {exc}") from exc

    def read_marker(self, name: str) -> Any:
        try:
            return orjson.loads((self.directory / name).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None

    def write_marker(self, name: str, value: Any) -> None:
        self._atomic_write(self.directory / name, orjson.dumps(value))

    def _atomic_write(self, target: Path, payload: bytes) -> None:
        tmp = target.with_name(target.name + ".tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
            self._fsync_directory()
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {target}: {exc}") from exc

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
