"""The dependency graph of the workers: ``depends_on`` targets resolved to entries, and every
cycle reported once."""

from __future__ import annotations

import attrs

from supervisor.config.builtins import builtin_worker, is_not_implemented
from supervisor.config.collect import Collector, Source
from supervisor.config.entries import Pending
from supervisor.config.model import WorkerKind

__all__ = ["cycles", "resolve_dependencies"]


def resolve_dependencies(c: Collector, src: Source, pending: list[Pending]) -> None:
    """Resolve ``depends_on`` (and manifest dependencies) to entry names; report unknown
    targets, self-dependencies and every cycle."""
    by_name = {p.name: p for p in pending}
    for p in pending:  # built-in aliases address the first entry of that worker
        builtin = builtin_worker(p.name)
        if builtin is not None and "#" not in p.name:
            for alias in (builtin.name, *builtin.aliases):
                by_name.setdefault(alias, p)
    children = {WorkerKind.ACTOR, WorkerKind.MANIFEST, WorkerKind.COMMAND}
    edges: dict[str, list[str]] = {}
    for p in pending:
        targets: list[str] = []
        at = (p.section, p.index, "supervise", "depends_on")
        where = f"{p.section}[{p.index}].supervise.depends_on"
        for position, target in enumerate(p.depends_on):
            found = by_name.get(target)
            if found is None:
                if target in c.skipped or is_not_implemented(target):
                    if not c.skipped.get(target):  # an invalid target is reported already
                        message = f"'{target}' is not run by iii-supervisor; ignored"
                        c.warn(src, at + (position,), where, message)
                else:
                    c.error(src, at + (position,), where, f"unknown worker '{target}'")
                continue
            if found is p:
                c.error(src, at + (position,), where, f"'{target}' cannot depend on itself")
                continue
            if found.entry.kind in children and found.name not in targets:
                targets.append(found.name)
        for target in p.manifest_deps:
            found = by_name.get(target)
            if found is not None and found is not p and found.entry.kind in children:
                if found.name not in targets:
                    targets.append(found.name)
        edges[p.name] = targets
        if targets != list(p.entry.supervise.depends_on):
            spec = attrs.evolve(p.entry.supervise, depends_on=tuple(targets))
            p.entry = attrs.evolve(p.entry, supervise=spec)
    for cycle in cycles([p.name for p in pending], edges):
        first = by_name[cycle[0]]
        c.error(
            src,
            (first.section, first.index, "supervise", "depends_on"),
            f"{first.section}[{first.index}].supervise.depends_on",
            "dependency cycle: " + " -> ".join(cycle),
        )


def cycles(order: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Every elementary cycle reachable in declaration order, each once, as a closed path."""
    rank = {name: index for index, name in enumerate(order)}
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        stack.append(node)
        for target in edges.get(node, ()):
            if target in stack:
                loop = stack[stack.index(target) :]
                start = min(range(len(loop)), key=lambda i: rank[loop[i]])
                loop = loop[start:] + loop[:start]
                if tuple(loop) not in seen:
                    seen.add(tuple(loop))
                    found.append([*loop, loop[0]])
            elif target not in done:
                visit(target, stack)
        stack.pop()
        done.add(node)

    for name in order:
        if name not in done:
            visit(name, [])
    return found
