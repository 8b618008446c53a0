"""The registry of built-in workers: one row each (name, how it runs, manifest, block schema, defaults).

Adding a built-in is a manifest, a block schema, an actor package and one row here; the loader
reads everything it needs about a built-in from its row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from manifests.blocks import (
    configuration,
    cron,
    http,
    http_functions,
    observability,
    pubsub,
    queue,
    state,
    worker_manager,
)
from manifests.blocks import stream as stream_block
from manifests.model import Manifest
from manifests.schema import builtin_manifest
from supervisor.config.model import WorkerKind

__all__ = [
    "BUILTINS",
    "KNOWN_WORKER_NAMES",
    "MANDATORY",
    "NOT_IMPLEMENTED",
    "RENAMED_PAIRS",
    "Builtin",
    "UpstreamWorker",
    "builtin_worker",
    "configuration_id",
    "is_not_implemented",
]


@attrs.frozen
class UpstreamWorker:
    """A worker name upstream ``iii`` knows, and its other spellings."""

    name: str
    aliases: tuple[str, ...] = ()
    # Upstream's new spelling of a renamed worker (WORKERS.md §1.2): listing both is an error.
    renamed_to: str | None = None


@attrs.frozen
class Builtin(UpstreamWorker):
    """A worker the supervisor implements itself, and everything the loader needs to run it."""

    kind: WorkerKind = WorkerKind.ACTOR
    actor: str | None = None  # ACTOR: the package run as ``python -m <actor>``
    manifest: str | None = None  # ACTOR: manifests/data/<manifest>.yaml
    block: type | None = None  # the schema of its ``config:`` block (manifests.blocks)
    defaults: Mapping[str, Any] | None = None  # the block it runs with when config.yaml has none
    mandatory: bool = False  # run even when config.yaml does not list it
    # §1.6: its settings are also held by the configuration worker, seeded from config.yaml.
    in_configuration: bool = False
    # At most one entry: a second would serve the same function ids with other settings.
    single: bool = False

    def load_manifest(self) -> Manifest:
        if self.manifest is None:
            raise KeyError(f"{self.name} runs inside the supervisor; it has no manifest")
        return builtin_manifest(self.manifest)


# Mandatory rows are injected in this order when config.yaml leaves them out.
BUILTINS: tuple[Builtin, ...] = (
    Builtin(
        "iii-http",
        ("http",),
        renamed_to="http",
        actor="actors.http",
        manifest="iii-http",
        block=http.HttpBlock,
        defaults=http.DEFAULTS,
        in_configuration=True,
    ),
    Builtin(
        "iii-state",
        ("state",),
        renamed_to="state",
        actor="actors.state",
        manifest="iii-state",
        block=state.StateBlock,
        defaults=state.DEFAULTS,
        in_configuration=True,
    ),
    Builtin(
        "iii-pubsub",
        ("pubsub",),
        renamed_to="pubsub",
        actor="actors.pubsub",
        manifest="iii-pubsub",
        block=pubsub.PubSubBlock,
        defaults=pubsub.DEFAULTS,
        in_configuration=True,
    ),
    Builtin(
        "iii-stream",
        ("stream",),
        actor="actors.stream",
        manifest="iii-stream",
        block=stream_block.StreamBlock,
        defaults=stream_block.DEFAULTS,
        in_configuration=True,
    ),
    Builtin(
        "iii-queue",
        ("queue",),
        renamed_to="queue",
        actor="actors.queue",
        manifest="iii-queue",
        block=queue.QueueBlock,
        defaults=queue.DEFAULTS,
        in_configuration=True,
    ),
    Builtin(
        "iii-cron",
        ("cron",),
        renamed_to="cron",
        actor="actors.cron",
        manifest="iii-cron",
        block=cron.CronBlock,
        defaults=cron.DEFAULTS,
        in_configuration=True,
    ),
    Builtin(
        "iii-http-functions",
        actor="actors.http_functions",
        manifest="iii-http-functions",
        block=http_functions.HttpFunctionsBlock,
        defaults=http_functions.DEFAULTS,
        single=True,  # its two functions have one owner; which entry's security would win?
    ),
    Builtin(
        "configuration",
        actor="actors.configuration",
        manifest="configuration",
        block=configuration.ConfigurationBlock,
        defaults=configuration.DEFAULTS,
        mandatory=True,
    ),
    Builtin(
        "iii-observability",
        actor="actors.observability",
        manifest="iii-observability",
        block=observability.ObservabilityBlock,
        defaults=observability.DEFAULTS,
        mandatory=True,
        in_configuration=True,
    ),
    # Takes no settings; a config: block is accepted and not read, as upstream does.
    Builtin("iii-engine-functions", kind=WorkerKind.IN_PROCESS, mandatory=True),
    Builtin(
        "iii-worker-manager",
        kind=WorkerKind.LISTENER,
        block=worker_manager.ListenerBlock,
        defaults=worker_manager.DEFAULTS,
        mandatory=True,
    ),
)

# Upstream built-ins we do not run yet: such entries load with a warning, so upstream files load.
NOT_IMPLEMENTED: tuple[UpstreamWorker, ...] = (
    UpstreamWorker("iii-exec"),
    UpstreamWorker("iii-bridge"),
    UpstreamWorker("iii-telemetry"),
)

_BY_NAME = {alias: b for b in BUILTINS for alias in (b.name, *b.aliases)}
_NOT_IMPLEMENTED_NAMES = frozenset(a for w in NOT_IMPLEMENTED for a in (w.name, *w.aliases))

MANDATORY: tuple[str, ...] = tuple(b.name for b in BUILTINS if b.mandatory)
RENAMED_PAIRS: dict[str, str] = {
    w.name: w.renamed_to for w in (*BUILTINS, *NOT_IMPLEMENTED) if w.renamed_to is not None
}
KNOWN_WORKER_NAMES: tuple[str, ...] = tuple(sorted({*_BY_NAME, *_NOT_IMPLEMENTED_NAMES}))


def builtin_worker(name: str) -> Builtin | None:
    """The built-in a worker name selects (``http``, ``iii-http#1`` → iii-http), if any."""
    return _BY_NAME.get(name.split("#", 1)[0])


def is_not_implemented(name: str) -> bool:
    """An upstream built-in's name (or other spelling) that iii-supervisor does not run yet."""
    return name in _NOT_IMPLEMENTED_NAMES


def configuration_id(name: str) -> str | None:
    """The configuration worker's id for a worker's settings (§1.6), if it keeps them there."""
    builtin = builtin_worker(name)
    return builtin.name if builtin is not None and builtin.in_configuration else None
