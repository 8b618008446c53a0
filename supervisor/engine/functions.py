"""The function table: every registered function, keyed by (namespace, function id).

An entry holds a *set* of owning connections and a picking rule (round robin over the owners
that are not draining): one owner today, replicas later. Built-ins have no owner and a handler.
An HTTP-invoked function (external.py) has both: the connection that registered it owns it (its
lease, its lifetime) and the engine runs it (the handler calls iii-http-functions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import attrs

from supervisor.engine.descriptor import DEFAULT_DESCRIPTOR, ObserveDescriptor

if TYPE_CHECKING:
    from supervisor.engine.connection import Connection

Key = tuple[str, str]  # (namespace, function_id)


@attrs.define(eq=False, slots=True)
class FunctionEntry:
    function_id: str
    namespace: str
    owners: list[Connection] = attrs.field(factory=list)  # empty: built into the engine
    description: str | None = None
    request_format: Any = None
    response_format: Any = None
    metadata: Any = None
    builtin: Callable[..., Any] | None = None
    component: str | None = None  # worker_name shown for built-ins
    observe: ObserveDescriptor = DEFAULT_DESCRIPTOR  # registerfunction.observe (descriptor.py)
    invocation: Any = None  # HTTP-invoked (external.py): the registration's `invocation`
    _turn: int = 0
    # (namespace, function_id), made once: the table, the observer directory and clean-up
    # look it up for every entry they touch (neither part changes after creation).
    key: Key = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.key = (self.namespace, self.function_id)

    @property
    def in_engine(self) -> bool:
        """A built-in of the engine itself (an HTTP-invoked function has a handler too, but a
        worker owns it)."""
        return self.builtin is not None and self.invocation is None

    @property
    def owner(self) -> Connection | None:
        """The first owner (the only one until replicas): who registered it first."""
        return self.owners[0] if self.owners else None

    def pick(self) -> Connection | None:
        """The owner the next call goes to: round robin, skipping draining owners."""
        owners = self.owners
        if len(owners) <= 1:
            return owners[0] if owners and self.builtin is None else None
        for _ in range(len(owners)):
            self._turn = (self._turn + 1) % len(owners)
            conn = owners[self._turn]
            if not conn.draining:
                return conn
        return owners[0]

    @property
    def worker_name(self) -> str:
        owner = self.owner
        if owner is not None and owner.name:
            return owner.name
        if self.component:
            return self.component
        return self.function_id.split("::", 1)[0]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "function_id": self.function_id,
            "namespace": self.namespace,
            "worker_name": self.worker_name,
        }
        if self.description is not None:
            out["description"] = self.description
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


class FunctionTable:
    """Entries by key, plus the namespaces each function id lives in (for not-found hints)."""

    def __init__(self) -> None:
        self._entries: dict[Key, FunctionEntry] = {}
        self._spaces: dict[str, set[str]] = {}
        # Built-ins a worker's registration took the place of (engine::log::* under the
        # observability actor): each comes back when the worker's entry goes.
        self._shadowed: dict[Key, FunctionEntry] = {}
        self.revision = 0  # bumped on every add/remove: "functions changed" is a comparison

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[Key]:
        return iter(self._entries)

    def __getitem__(self, key: Key) -> FunctionEntry:
        return self._entries[key]

    def get(self, key: Key) -> FunctionEntry | None:
        return self._entries.get(key)

    def values(self) -> Iterator[FunctionEntry]:
        return iter(self._entries.values())

    def items(self) -> Iterator[tuple[Key, FunctionEntry]]:
        return iter(self._entries.items())

    def put(self, entry: FunctionEntry) -> None:
        current = self._entries.get(entry.key)
        if current is not None and current.in_engine and not entry.in_engine:
            self._shadowed[entry.key] = current
        self._entries[entry.key] = entry
        self._spaces.setdefault(entry.function_id, set()).add(entry.namespace)
        self.revision += 1

    def remove(self, entry: FunctionEntry) -> None:
        key = entry.key
        if self._entries.get(key) is not entry:
            return
        del self._entries[key]
        spaces = self._spaces.get(entry.function_id)
        if spaces is not None:
            spaces.discard(entry.namespace)
            if not spaces:
                del self._spaces[entry.function_id]
        self.revision += 1
        if entry.in_engine:
            self._shadowed[key] = entry  # replaced by a worker's entry, put right after
        else:
            fallback = self._shadowed.pop(key, None)
            if fallback is not None:
                self.put(fallback)

    def namespaces_of(self, function_id: str) -> list[str]:
        return sorted(self._spaces.get(function_id, ()))
