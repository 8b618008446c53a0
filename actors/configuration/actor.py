"""The ``configuration`` actor: a schema-validated registry of named configuration entries with
``configuration`` triggers (WORKERS.md §2), persisted as one YAML file per entry (``fs``).

**Deliberate difference from upstream: config.yaml is the source of truth at every boot.**
Upstream treats a worker's ``config:`` block as a first-boot seed, then comments it out of
config.yaml and serves the stored value forever after (§1.6 "seed stripping"). Here config.yaml
is never edited. The supervisor hands this actor the ``config:`` blocks of the workers that keep
their settings here (``entries`` below). At boot, for each of those ids, every top-level key the
block sets overrides the persisted value, and each persisted value thrown away is logged at WARN
(``persisted configuration values discarded; config.yaml wins``). Keys the block does not set
keep their persisted value. Runtime changes made with ``configuration::set`` still apply live
(the ``configuration`` trigger fires, owners re-read) and persist until the next boot. A boot is
an engine start: a restart of this actor alone, within the same supervisor run and with the same
entries, keeps runtime changes (``actors.configuration.seeding``).

Other differences: a relative ``adapter.config.directory`` (default ``config``) is resolved
against the actor's data directory (``III_DATA_DIR``), there is no migration from the legacy
``./data/configuration``, no watcher of the directory (edit config.yaml or call
``configuration::set``), and the ``bridge`` adapter is not supported yet.

Config block (``III_CONFIG``, ``manifests.blocks.configuration``)::

    {
      "adapter": {"name": "fs", "config": {"directory": "config"}},   # optional
      "ttl_seconds": 0,                                                # optional
      "entries": {"iii-http": {"port": 3111}, "iii-state": {...}}      # from config.yaml
    }

``entries`` maps a configuration id to that worker's ``config:`` block from config.yaml, already
interpolated (flavour A); workers without a block are left out.
"""

from __future__ import annotations

from typing import Any

import attrs
import structlog
import trio

from actors.configuration.config import directory_of
from actors.configuration.schema import json_equal
from actors.configuration.seeding import (
    DISPLAY_NAMES,
    MARKER,
    engine_run,
    merge_seed,
    seeds_digest,
)
from actors.configuration.service import SCHEMAS_MARKER, ConfigurationService
from actors.configuration.store import ID_PATTERN, Entry, FsStore, StoreError
from actors.runtime import EXIT_CANTCREAT, ActorContext, ActorExit, resolve_path
from manifests.blocks.configuration import ConfigurationBlock

__all__ = ["apply_seeds", "serve"]

log = structlog.get_logger("configuration")


def apply_seeds(store: FsStore, entries: dict[str, Entry], seeds: dict[str, Any]) -> None:
    """Apply config.yaml's values over the persisted entries (blocking; module docstring)."""
    for entry_id, seed in seeds.items():
        if not ID_PATTERN.fullmatch(entry_id):
            log.warning("config.yaml entry ignored: invalid configuration id", id=entry_id)
            continue
        old = entries.get(entry_id)
        if old is None:
            new = Entry(entry_id, DISPLAY_NAMES.get(entry_id, entry_id), "", seed)
            store.write(new)
            entries[entry_id] = new
            log.info("configuration seeded from config.yaml", id=entry_id)
            continue
        merged, discards = merge_seed(old.value, seed)
        if discards:
            log.warning(
                "persisted configuration values discarded; config.yaml wins",
                id=entry_id,
                discarded=[d.to_log() for d in discards],
            )
        if not json_equal(merged, old.value):
            new = attrs.evolve(old, value=merged)
            store.write(new)
            entries[entry_id] = new


def _load(store: FsStore, seeds: dict[str, Any], run: str | None) -> dict[str, Entry]:
    entries = store.load()
    if run is not None:
        remembered = store.read_marker(SCHEMAS_MARKER)
        if isinstance(remembered, dict) and remembered.get("engine_run") == run:
            for entry_id, schema in (remembered.get("schemas") or {}).items():
                if entry_id in entries:
                    entries[entry_id].schema = schema
    stamp = {"engine_run": run, "seeds": seeds_digest(seeds)}
    if run is not None and store.read_marker(MARKER) == stamp:
        log.info("restarted within the same engine run; runtime values kept", engine_run=run)
        return entries
    apply_seeds(store, entries, seeds)
    store.write_marker(MARKER, stamp)
    return entries


async def serve(ctx: ActorContext[ConfigurationBlock]) -> None:
    """Load the entries (config.yaml's seeds applied), serve ``configuration::*`` until asked
    to stop. An unusable directory ends the actor with exit code 73."""
    block = ctx.block
    store = FsStore(resolve_path(directory_of(block), ctx.data_dir))
    run = engine_run()
    try:
        entries = await trio.to_thread.run_sync(_load, store, block.seeds, run)
    except (StoreError, OSError) as exc:
        raise ActorExit(
            EXIT_CANTCREAT,
            "cannot use the configuration directory",
            directory=str(store.directory),
            error=str(exc),
        ) from exc
    async with trio.open_nursery() as nursery:
        service = ConfigurationService(
            ctx.client, store, entries, nursery, ttl_seconds=block.ttl_seconds, engine_run=run
        )
        service.register()
        log.info("configuration ready", directory=str(store.directory), entries=len(entries))
        await ctx.stopped()
        nursery.cancel_scope.cancel()
