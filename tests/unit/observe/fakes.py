"""Fakes for the observer table's unit tests: a host with a dict of functions, a clock and a
list of dispatched activations, and a tiny filter (paths with ``$eq``/``$gte``) standing in
for iii-filter v1, which has tests of its own."""

from __future__ import annotations

from typing import Any

import attrs

from supervisor.engine.connection import Connection
from supervisor.engine.descriptor import read_descriptor
from supervisor.engine.functions import FunctionEntry
from supervisor.engine.observe.records import Job, Outcome
from supervisor.engine.observe.table import ObserverTable
from transport import messages as m

Key = tuple[str, str]
SDK025 = frozenset({"observe.v1", "local-dispatch.v1", "large-messages.v1"})


class FakeFilterError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attrs.frozen
class FakeFilter:
    raw: dict[str, Any]

    @property
    def normal(self) -> Any:
        return {} if not self.raw else {"$and": [{k: v} for k, v in self.raw.items()]}

    @property
    def roots(self) -> frozenset[str]:
        return frozenset(path.split(".")[0] for path in self.raw)

    def matches(self, doc: Any) -> bool:
        for path, ops in self.raw.items():
            value: Any = doc
            for seg in path.split("."):
                if not isinstance(value, dict) or seg not in value:
                    return False
                value = value[seg]
            for op, arg in ops.items():
                if op == "$eq" and value != arg:
                    return False
                if op == "$gte" and not (isinstance(value, int | float) and value >= arg):
                    return False
        return True


def fake_compile(raw: object) -> FakeFilter:
    if not isinstance(raw, dict):
        raise FakeFilterError("a filter must be an object")
    for path, ops in raw.items():
        if not isinstance(ops, dict):
            raise FakeFilterError(f"{path}: literal values need an operator such as $eq")
    return FakeFilter(raw)


@attrs.define
class Activation:
    entry: FunctionEntry
    job: Job
    on_done: Outcome


class FakeHost:
    def __init__(self) -> None:
        self.t = 100.0
        self.functions: dict[Key, FunctionEntry] = {}
        self.activations: list[Activation] = []
        self.wakes: list[float] = []
        self.denied: dict[Key, str] = {}

    def live(self, conn: Connection | None) -> bool:
        return conn is not None and not conn.closing

    def function(self, key: Key) -> FunctionEntry | None:
        return self.functions.get(key)

    def activate(self, entry: FunctionEntry, job: Job, on_done: Outcome) -> None:
        self.activations.append(Activation(entry, job, on_done))

    def wake(self, at: float) -> None:
        self.wakes.append(at)

    def now(self) -> float:
        return self.t

    def forbidden(self, conn: Connection, key: Key) -> str | None:
        return self.denied.get(key)


def conn(name: str, features: frozenset[str] = SDK025, ns: str = "default") -> Connection:
    c = Connection(kind="test", name=name)
    c.namespace = ns
    c.features = features
    return c


def outbox(c: Connection) -> list[Any]:
    out = []
    while True:
        try:
            out.append(c._recv.receive_nowait())  # type: ignore[union-attr]
        except Exception:
            return out


def of(c: Connection, cls: type) -> list[Any]:
    return [x for x in outbox(c) if isinstance(x, cls)]


class World:
    """A table, its host and helpers to register functions and observe them."""

    def __init__(self) -> None:
        self.host = FakeHost()
        ids = iter(range(1, 1_000_000))
        self.table = ObserverTable(
            self.host, fake_compile, new_id=lambda: f"act-{next(ids)}", wall_ms=lambda: 5000
        )

    def register(self, owner: Connection | None, fid: str, observe: Any = None) -> FunctionEntry:
        entry = FunctionEntry(function_id=fid, namespace=owner.ns if owner else "default")
        if owner is not None:
            entry.owners.append(owner)
        entry.observe = read_descriptor(observe)[0]
        self.host.functions[entry.key] = entry
        self.last_registered = self.table.function_stored(entry, owner, self.host.t)
        return entry

    def unregister(self, entry: FunctionEntry) -> None:
        owner = entry.owner
        del self.host.functions[entry.key]
        self.table.function_removed(entry, owner, self.host.t)

    def observe(self, observer: Connection, oid: str = "o1", **fields: Any) -> Any:
        source = fields.pop("source", {"function_id": "orders::create"})
        target = fields.pop("target", {"function_id": "audit::log"})
        outbox(observer)
        self.table.observe(observer, m.Observe(oid, source, target, **fields), self.host.t)
        results = [x for x in outbox(observer) if isinstance(x, m.ObserveResult)]
        assert len(results) == 1, results
        return results[0]
