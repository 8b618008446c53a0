"""The observer table (OBSERVE.md §4–§8): every observer, its state machine, the owner
handshake with revisions, activations with their fires, in-flight bound and loop guard, and
the timers (expiry, grace, owner-ack deadline, tombstones).

Sans I/O: messages go out through ``Connection.send`` (which only enqueues) and calls through
the ``Host`` (the bus); time comes in as ``now``. ``watched`` maps a function key to the
active observers that routed calls of it must be matched against; a key absent from it costs
the bus's completion hook one dict lookup.

The records live in ``records``; the pure pieces beside it (``spec``, ``envelope``,
``argsformat``).
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from supervisor.engine.descriptor import DEFAULT_DESCRIPTOR, OWNER, ObserveDescriptor
from supervisor.engine.observe.argsformat import check_args
from supervisor.engine.observe.envelope import (
    ENGINE_CALLER,
    PARTS,
    activation_data,
    envelope,
    observe_depth,
    stamp_caller,
)
from supervisor.engine.observe.guard import Watch, eq_guard, range_guard
from supervisor.engine.observe.records import (
    ACK_DEADLINE,
    GRACE,
    LOOP_LIMIT,
    QUEUE_LIMIT,
    TERMINAL,
    TOMBSTONE_TTL,
    Event,
    Host,
    Job,
    Observer,
    Outcome,
    Tombstone,
    capable,
    int_or_zero,
    number_or_zero,
    on_accepts,
    str_or_none,
    strings,
)
from supervisor.engine.observe.spec import Compile, Key, ObserveError, parse_observe
from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.connection import Connection
    from supervisor.engine.functions import FunctionEntry

log = structlog.get_logger(__name__)


def _body(code: str, message: str) -> m.ErrorBody:
    return m.ErrorBody(code, message)


class ObserverTable:
    def __init__(
        self,
        host: Host,
        compile_filter: Compile,
        *,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.host = host
        self.compile_filter = compile_filter
        self.new_id = new_id
        self.wall_ms = wall_ms
        self.observers: dict[str, Observer] = {}
        self.by_source: dict[Key, dict[str, Observer]] = {}
        self.by_target: dict[Key, dict[str, Observer]] = {}
        self.by_conn: dict[str, dict[str, Observer]] = {}
        self.revisions: dict[Key, int] = {}
        self.owner_ready: dict[Key, Connection] = {}  # got this function's functionregistered
        self.descriptors: dict[Key, ObserveDescriptor] = {}  # of the current registration
        # per watched function: its active observers, indexed (guard.Watch; a new one on
        # every change, so a call keeps the one it started with)
        self.watched: dict[Key, Watch] = {}
        self.tombstones: dict[str, Tombstone] = {}
        self._timers: list[tuple[float, int, str, str]] = []
        self._seq = 0

    # -- timers ----------------------------------------------------------------------------

    def _timer(self, at: float, kind: str, oid: str) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (at, self._seq, kind, oid))
        if self._timers[0][1] == self._seq:
            self.host.wake(at)

    def next_wakeup(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def tick(self, now: float) -> None:
        """Fire every timer due at ``now`` (each re-checks that it still applies)."""
        heap = self._timers
        while heap and heap[0][0] <= now:
            at, _, kind, oid = heapq.heappop(heap)
            if kind == "tomb":
                tomb = self.tombstones.get(oid)
                if tomb is not None and tomb.until <= now:
                    del self.tombstones[oid]
                continue
            obs = self.observers.get(oid)
            if obs is None:
                continue
            if kind == "expire" and obs.expires_at == at:
                ms = obs.spec.expires_in_ms
                self.finish(obs, "disposed", _body("EXPIRED", f"expired after {ms} ms"), now)
            elif kind == "grace" and obs.grace_until == at and not self.host.live(obs.conn):
                text = f"observing worker gone for {int(GRACE)} s"
                self.finish(obs, "disposed", _body("OBSERVER_GONE", text), now)
            elif kind == "ack" and obs.ack_deadline == at and obs.acked_by is not obs.announced_to:
                text = f"the owner of {obs.spec.source[1]} did not acknowledge the observer"
                self.finish(obs, "error", _body("OWNER_TIMEOUT", text), now)

    # -- observe / unobserve ---------------------------------------------------------------

    def observe(self, conn: Connection, msg: m.Observe, now: float) -> None:
        try:
            spec = parse_observe(msg, conn.ns, self.compile_filter)
        except ObserveError as exc:
            conn.send(m.ObserveResult(msg.id, "error", exc.body()))
            return
        for key in (spec.source, spec.target):  # §5.2 step 4
            refusal = self.host.forbidden(conn, key)
            if refusal is not None:
                conn.send(m.ObserveResult(spec.id, "error", _body("FORBIDDEN", refusal)))
                return
        tomb = self.tombstones.get(spec.id)
        if tomb is not None:
            conn.send(m.ObserveResult(spec.id, "disposed", tomb.reason))
            return
        existing = self.observers.get(spec.id)
        if existing is not None:
            if existing.conn is not conn and self.host.live(existing.conn):
                text = f"observer id {spec.id} is held by another connection"
                conn.send(m.ObserveResult(spec.id, "error", _body("OBSERVER_ID_CONFLICT", text)))
                return
            if existing.spec.same_definition(spec):
                self._bind(existing, conn)
                self.settle(existing, now, quiet=True)
                result = m.ObserveResult(
                    spec.id, existing.state, existing.reason, self._warnings(existing)
                )
                conn.send(result)
                return
            self._remove(existing)  # replaced: a new observer with fresh counters
        obs = Observer(
            spec=spec,
            conn=None,
            created_at_ms=self.wall_ms(),
            expires_at=now + spec.expires_in_ms / 1000 if spec.expires_in_ms else None,
            guard=eq_guard(getattr(spec.compiled, "normal", None)),
            order_guard=range_guard(getattr(spec.compiled, "normal", None)),
        )
        self.observers[spec.id] = obs
        self.by_source.setdefault(spec.source, {})[spec.id] = obs
        self.by_target.setdefault(spec.target, {})[spec.id] = obs
        self._bind(obs, conn)
        if obs.expires_at is not None:
            self._timer(obs.expires_at, "expire", spec.id)
        self.settle(obs, now, quiet=True)
        warnings = self._warnings(obs) if obs.state not in TERMINAL else None
        conn.send(m.ObserveResult(spec.id, obs.state, obs.reason, warnings))

    def _warnings(self, obs: Observer) -> list[str] | None:
        """Advisory texts (§5.2 step 8): filter roots this observer can never see, and the
        ``deliver`` part added to its capture."""
        spec = obs.spec
        roots: frozenset[str] = getattr(spec.compiled, "roots", frozenset())
        out: list[str] = []
        if self._owner_delivered(spec.source):
            never = [r for r in ("output", "error") if r in roots]
            why = "an owner-delivered source reports neither"
        else:
            never = ["output"] if spec.on == "error" and "output" in roots else []
            never += ["error"] if spec.on == "success" and "error" in roots else []
            why = f'calls seen with on "{spec.on}" never carry it'
        for root in never:
            out.append(f"filters read {root!r}, which can never be present ({why})")
        if spec.added_capture is not None:
            out.append(f"capture extended with {spec.added_capture!r} for deliver")
        return out or None

    def _bind(self, obs: Observer, conn: Connection) -> None:
        if obs.conn is not None:
            self.by_conn.get(obs.conn.worker_id, {}).pop(obs.id, None)
        obs.conn = conn
        obs.grace_until = None
        self.by_conn.setdefault(conn.worker_id, {})[obs.id] = obs

    def unobserve(self, conn: Connection, msg: m.Unobserve, now: float) -> None:
        obs = self.observers.get(msg.id)
        if obs is None or obs.conn is not conn:
            return  # unknown, or not this connection's: ignored (§5.4 notes)
        text = "disposed by the observing worker"
        self.finish(obs, "disposed", _body("UNOBSERVED", text), now, notify=False)

    # -- states ----------------------------------------------------------------------------

    def settle(self, obs: Observer, now: float, *, quiet: bool = False) -> None:
        """Re-evaluate an observer's conditions (§5.3) and report a changed state."""
        if obs.state in TERMINAL:
            return
        spec = obs.spec
        entry = self.host.function(spec.source)
        if entry is not None and not obs.attached:
            problem = self._check_source(obs)
            if problem is not None:
                self.finish(obs, "error", problem, now, notify=not quiet)
                return
            self._attach(obs, entry, now)
        owner = entry.owner if entry is not None else None
        reason: m.ErrorBody | None = None
        if not self.host.live(obs.conn):
            reason = _body("OBSERVER_DISCONNECTED", "the observing worker is disconnected")
        elif entry is None:
            reason = _body("SOURCE_UNAVAILABLE", f"{spec.source[1]} is not registered")
        elif capable(owner) and obs.acked_by is not owner:
            reason = None
            state = "suspended" if obs.ever_active else "pending"
            self._set_state(obs, state, None, quiet)
            return
        elif self.host.function(spec.target) is None:
            reason = _body("TARGET_UNAVAILABLE", f"target {spec.target[1]} is not registered")
        if reason is None:
            self._set_state(obs, "active", None, quiet)
            self._pump(obs)
        else:
            self._set_state(obs, "suspended" if obs.ever_active else "pending", reason, quiet)

    def _set_state(
        self, obs: Observer, state: str, reason: m.ErrorBody | None, quiet: bool
    ) -> None:
        changed = state != obs.state
        obs.reason = reason
        if not changed:
            return
        obs.state = state
        if state == "active":
            obs.ever_active = True
        self._refresh_watch(obs.spec.source)
        if not quiet and self.host.live(obs.conn):
            assert obs.conn is not None
            obs.conn.send(m.ObserverStateChanged(obs.id, state, obs.fires, reason))

    def _refresh_watch(self, key: Key) -> None:
        if self._owner_delivered(key):
            self.watched.pop(key, None)
            return
        active = [o for o in self.by_source.get(key, {}).values() if o.state == "active"]
        if active:
            reads_caller = any(
                "caller" in getattr(o.spec.compiled, "roots", ("caller",)) for o in active
            )
            self.watched[key] = Watch(tuple(active), reads_caller)
        else:
            self.watched.pop(key, None)

    def _owner_delivered(self, key: Key) -> bool:
        desc = self.descriptors.get(key)
        return desc is not None and desc.delivery == OWNER

    def finish(
        self,
        obs: Observer,
        state: str,
        reason: m.ErrorBody,
        now: float,
        *,
        notify: bool = True,
    ) -> None:
        """Enter ``error`` or ``disposed``: detach, forget, tell the observing worker."""
        if obs.state in TERMINAL:
            return
        obs.state = state
        obs.reason = reason
        obs.queue.clear()
        self._remove(obs)
        if state == "disposed":
            self.tombstones[obs.id] = Tombstone(reason, obs.fires, now + TOMBSTONE_TTL)
            self._timer(now + TOMBSTONE_TTL, "tomb", obs.id)
        if notify and self.host.live(obs.conn):
            assert obs.conn is not None
            obs.conn.send(m.ObserverStateChanged(obs.id, state, obs.fires, reason))
        log.info("observer ended", id=obs.id, state=state, code=reason.code, fires=obs.fires)

    def _remove(self, obs: Observer) -> None:
        spec = obs.spec
        self._detach(obs)
        if self.observers.get(obs.id) is obs:
            del self.observers[obs.id]
        for index, key in ((self.by_source, spec.source), (self.by_target, spec.target)):
            group = index.get(key)
            if group is not None and group.get(obs.id) is obs:
                del group[obs.id]
                if not group:
                    del index[key]
        if obs.conn is not None:
            self.by_conn.get(obs.conn.worker_id, {}).pop(obs.id, None)
        self._refresh_watch(spec.source)

    # -- the owner side (§6) ---------------------------------------------------------------

    def _check_source(self, obs: Observer) -> m.ErrorBody | None:
        """Stage B (§5.2 step 7): against the source's observe descriptor."""
        desc = self.descriptors.get(obs.spec.source, DEFAULT_DESCRIPTOR)
        fid = obs.spec.source[1]
        if not desc.allow:
            return _body("NOT_OBSERVABLE", f"{fid} does not allow observers")
        if desc.delivery == OWNER:
            if desc.args_format is not None:
                problem = check_args(desc.args_format, obs.spec.args)
                if problem is not None:
                    return _body("INVALID_ARGS", problem)
            return None
        if obs.spec.args:
            return _body("INVALID_ARGS", f"{fid} takes no args")
        return None

    def _bump(self, key: Key) -> int:
        rev = self.revisions.get(key, 0) + 1
        self.revisions[key] = rev
        return rev

    def _attach(self, obs: Observer, entry: FunctionEntry, now: float) -> None:
        obs.attached = True
        owner = entry.owner
        if capable(owner) and self.owner_ready.get(entry.key) is owner:
            assert owner is not None
            rev = self._bump(entry.key)
            owner.send(m.ObserverAdded(entry.function_id, entry.namespace, rev, obs.info()))
            self._awaiting(obs, owner, rev, now)

    def _awaiting(self, obs: Observer, owner: Connection, revision: int, now: float) -> None:
        obs.announced_to = owner
        obs.announced_revision = revision
        if obs.acked_by is not owner:
            obs.ack_deadline = now + ACK_DEADLINE
            self._timer(obs.ack_deadline, "ack", obs.id)

    def _detach(self, obs: Observer) -> None:
        if not obs.attached:
            return
        obs.attached = False
        owner = obs.announced_to
        key = obs.spec.source
        obs.announced_to = None
        obs.acked_by = None
        obs.ack_deadline = None
        if owner is not None and self.host.live(owner) and self.owner_ready.get(key) is owner:
            owner.send(m.ObserverRemoved(key[1], key[0], self._bump(key), obs.id))

    def function_stored(
        self, entry: FunctionEntry, conn: Connection | None, now: float
    ) -> tuple[int, list[dict[str, Any]]]:
        """A function was stored (registered or re-registered): stage B for its observers,
        every state it moves, and what the ``functionregistered`` to an observe-capable
        owner lists (the current revision and the attached observers, §4.3, §4.4)."""
        key = entry.key
        self.descriptors[key] = entry.observe
        self.owner_ready.pop(key, None)
        sources = list(self.by_source.get(key, {}).values())
        for obs in sources:
            if obs.announced_to is not conn:
                obs.announced_to = None
                obs.acked_by = None
                obs.ack_deadline = None
            problem = self._check_source(obs)
            if problem is not None:
                self.finish(obs, "error", problem, now)
            else:
                obs.attached = True
        listed = [o for o in self.by_source.get(key, {}).values() if o.attached]
        revision = self.revisions.get(key, 0)
        if capable(conn):
            assert conn is not None
            for obs in listed:
                self._awaiting(obs, conn, revision, now)
            self.owner_ready[key] = conn
        self._refresh_watch(key)
        for obs in listed:
            self.settle(obs, now)
        for obs in list(self.by_target.get(key, {}).values()):
            self.settle(obs, now)
        return revision, [o.info() for o in listed]

    def function_removed(self, entry: FunctionEntry, conn: Connection | None, now: float) -> None:
        """``conn`` stopped owning ``entry`` (the host no longer resolves it): its observers
        stay attached, suspended, and are listed to the next owner (§5.5)."""
        key = entry.key
        if self.owner_ready.get(key) is conn:
            del self.owner_ready[key]
        sources = self.by_source.get(key)  # none, for most functions: a departing worker's
        if sources:  # clean-up walks them all
            for obs in list(sources.values()):
                obs.announced_to = None
                obs.acked_by = None
                obs.ack_deadline = None
                self.settle(obs, now)
        targets = self.by_target.get(key)
        if targets:
            for obs in list(targets.values()):
                self.settle(obs, now)

    def connection_gone(self, worker_id: str, now: float) -> None:
        """The observing worker left: its observers wait ``GRACE`` for a replay (§5.4 #11)."""
        for obs in list(self.by_conn.pop(worker_id, {}).values()):
            obs.grace_until = now + GRACE
            self._timer(obs.grace_until, "grace", obs.id)
            self.settle(obs, now, quiet=True)

    def ack(self, conn: Connection, msg: m.ObserverAck, now: float) -> None:
        """``observerack`` (§6.2)."""
        key = (msg.namespace or conn.ns, msg.function_id)
        entry = self.host.function(key)
        if entry is None or conn not in entry.owners:
            return
        obs = self.by_source.get(key, {}).get(msg.id)
        if obs is None or not obs.attached or msg.revision < obs.announced_revision:
            return
        if msg.error is not None:
            self.finish(obs, "error", m.ErrorBody(msg.error.code, msg.error.message), now)
            return
        obs.acked_by = conn
        obs.announced_to = conn
        obs.ack_deadline = None
        self.settle(obs, now)

    # -- activations (§7) ------------------------------------------------------------------

    def fire(self, obs: Observer, event: Event) -> None:
        """One event for one observer: loop guard, fires, then dispatch or queue."""
        if obs.state != "active":
            obs.drop("INACTIVE")
            return
        depth = event.depth + 1
        if depth > LOOP_LIMIT:
            obs.drop("LOOP_GUARD")
            return
        spec = obs.spec
        if spec.max_fires is not None and obs.fires >= spec.max_fires:
            obs.drop("INACTIVE")
            return
        activation_id = self.new_id()
        env = envelope(
            observer_id=spec.id,
            activation_id=activation_id,
            function_id=event.function_id,
            namespace=event.namespace,
            invocation_id=event.invocation_id,
            status=event.status,
            parts=event.parts,
            capture=spec.capture,
            started_at_ms=event.started_at_ms,
            duration_ms=event.duration_ms,
        )
        caller = {
            "worker_name": ENGINE_CALLER,
            "function_id": event.function_id,
            "invocation_id": event.invocation_id,
        }
        job = Job(
            data=activation_data(spec.deliver, event.parts, env),
            metadata=spec.metadata,
            caller=caller,
            depth=depth,
            activation_id=activation_id,
            observer_id=spec.id,
            traceparent=event.traceparent,
            baggage=event.baggage,
        )
        self._accept(obs, job)

    def _accept(self, obs: Observer, job: Job) -> None:
        obs.fires += 1
        if len(obs.queue) >= QUEUE_LIMIT:
            obs.fires -= 1
            obs.drop("QUEUE_FULL")
            return
        obs.queue.append(job)
        self._pump(obs)

    def _pump(self, obs: Observer) -> None:
        while obs.queue and obs.state == "active" and obs.in_flight < obs.spec.max_in_flight:
            job = obs.queue.popleft()
            entry = self.host.function(obs.spec.target)
            if entry is None:
                obs.drop("TARGET_UNAVAILABLE")
                if job.reply is not None:
                    job.reply(None, _body("TARGET_UNAVAILABLE", f"{obs.spec.target[1]} is gone"))
                self.settle(obs, self.host.now())
                continue
            obs.in_flight += 1
            self.host.activate(entry, job, self._done_fn(obs, job))
        spec = obs.spec
        if spec.max_fires is not None and obs.fires >= spec.max_fires and not obs.queue:
            if obs.state == "active":
                times = "time" if spec.max_fires == 1 else "times"
                reason = _body("MAX_FIRES", f"fired {spec.max_fires} {times}")
                self.finish(obs, "disposed", reason, self.host.now())

    def _done_fn(self, obs: Observer, job: Job) -> Outcome:
        def done(result: Any, err: m.ErrorBody | None) -> None:
            obs.in_flight -= 1
            if job.reply is not None:
                job.reply(result, err)
            elif err is not None:
                log.info("activation failed", observer_id=obs.id, code=err.code)
            if obs.queue:
                self._pump(obs)

        return done

    def owner_call(self, conn: Connection, msg: m.InvokeFunction, reply: Outcome) -> None:
        """``obs.call`` (§7.7): route to the observer's stored target."""
        act = msg.activation
        oid = act.get("observer_id") if isinstance(act, dict) else None
        obs = self.observers.get(oid) if isinstance(oid, str) else None
        if obs is None:
            reply(None, _body("OBSERVER_NOT_ACTIVE", f"observer {oid} is unknown"))
            return
        entry = self.host.function(obs.spec.source)
        if entry is None or conn not in entry.owners or obs.state != "active":
            reply(None, _body("OBSERVER_NOT_ACTIVE", f"observer {obs.id} is {obs.state}"))
            return
        depth = observe_depth(msg.observe_depth) + 1
        if depth > LOOP_LIMIT:
            obs.drop("LOOP_GUARD")
            reply(None, _body("LOOP_GUARD", f"observe depth {depth} exceeds {LOOP_LIMIT}"))
            return
        spec = obs.spec
        if spec.max_fires is not None and obs.fires >= spec.max_fires:
            reply(None, _body("OBSERVER_NOT_ACTIVE", f"observer {obs.id} has no fires left"))
            return
        job = Job(
            data=msg.data,
            metadata=spec.metadata,
            caller=stamp_caller(conn, msg.caller),
            depth=depth,
            activation_id=self.new_id(),
            observer_id=obs.id,
            traceparent=msg.traceparent,
            baggage=msg.baggage,
            reply=reply,
        )
        self._accept(obs, job)

    def reported(self, conn: Connection, items: Any) -> None:
        """``invocationsobserved`` (§8.1): each matched observer of each item activates."""
        if not isinstance(items, list):
            log.warning("invocationsobserved without an items list ignored", worker=conn.name)
            return
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("function_id"), str):
                continue
            ns = item.get("namespace")
            key = (ns if isinstance(ns, str) and ns else conn.ns, item["function_id"])
            entry = self.host.function(key)
            owner_ok = entry is not None and conn in entry.owners
            status = "error" if item.get("status") == "error" else "success"
            inv = item.get("invocation_id")
            event: Event | None = None
            for oid in strings(item.get("matched")):
                obs = self.observers.get(oid)
                if obs is None:
                    continue
                if not owner_ok or obs.spec.source != key or not obs.attached:
                    obs.drop("INACTIVE")
                    continue
                if not self._owner_delivered(key) and not on_accepts(obs.spec.on, status):
                    continue
                if event is None:
                    event = Event(
                        function_id=key[1],
                        namespace=key[0],
                        invocation_id=inv if isinstance(inv, str) else "",
                        status=status,
                        parts={p: item[p] for p in PARTS if p in item},
                        started_at_ms=int_or_zero(item.get("started_at_ms")),
                        duration_ms=number_or_zero(item.get("duration_ms")),
                        depth=observe_depth(item.get("observe_depth")),
                        traceparent=str_or_none(item.get("traceparent")),
                        baggage=str_or_none(item.get("baggage")),
                    )
                self.fire(obs, event)
