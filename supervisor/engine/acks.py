"""``functionregistered``: the acknowledgement of a stored registration (OBSERVE.md §4).

The registrar calls ``acknowledge`` once for every ``registerfunction`` it accepts and
stores. The connection gets a ``functionregistered`` only if it declared ``observe.v1``;
the observer directory hears of every stored registration either way.

The seam for the observer table is ``ObserverDirectory`` (the bus holds one as
``bus.observer_directory``; ``NoObservers`` until the observe family installs its own):

* ``function_stored(entry, conn, sent_id)`` is called right after ``entry`` was stored for
  ``conn`` (``sent_id`` is the id as the worker sent it). It returns the function's current
  observer-set revision (§4.3: not incremented by this call) and the ObserverInfo dicts of
  every observer attached to it (§3.6, §4.4), in the order to list them. When
  ``OBSERVE_V1 in conn.features`` those go out in the ``functionregistered`` sent right
  after the call, so the directory may count every listed observer as announced to ``conn``
  at that revision (§6.1 rule 2); otherwise the owner needs no handshake (§5.3 C).
* ``function_removed(entry, conn)`` is called when ``conn`` stopped owning ``entry``
  (``unregisterfunction``, a re-registration by another connection, or departure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from supervisor.engine.features import LOCAL_DISPATCH_V1, OBSERVE_V1
from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.connection import Connection
    from supervisor.engine.functions import FunctionEntry


class ObserverDirectory(Protocol):
    def function_stored(
        self, entry: FunctionEntry, conn: Connection, sent_id: str
    ) -> tuple[int, list[dict[str, Any]]]: ...

    def function_removed(self, entry: FunctionEntry, conn: Connection) -> None: ...


class NoObservers:
    """The directory while no observer table is installed: revision 0, nobody attached."""

    def function_stored(
        self, entry: FunctionEntry, conn: Connection, sent_id: str
    ) -> tuple[int, list[dict[str, Any]]]:
        return 0, []

    def function_removed(self, entry: FunctionEntry, conn: Connection) -> None:
        return None


def local_dispatch(conn: Connection, entry: FunctionEntry, sent_id: str, http: bool) -> bool:
    """May ``conn`` run ``entry`` in-process (OBSERVE.md §4.2)? All five rules must hold."""
    return (
        LOCAL_DISPATCH_V1 in conn.features  # 1: the connection declared it
        and not http  # 2: handler-backed, not HTTP-invoked
        and entry.function_id == sent_id  # 5: no prefix, no rename: a routed call reaches it
        and conn.session.local_dispatch_allowed(entry.namespace, entry.function_id)  # 3, 4
    )


def acknowledge(
    directory: ObserverDirectory,
    conn: Connection,
    entry: FunctionEntry,
    sent_id: str,
    *,
    http: bool = False,
) -> None:
    """Tell the directory ``entry`` was stored; ack it to an observe-capable ``conn``."""
    revision, observers = directory.function_stored(entry, conn, sent_id)
    if OBSERVE_V1 not in conn.features:
        return
    conn.send(
        m.FunctionRegistered(
            id=sent_id,
            namespace=entry.namespace,
            revision=revision,
            local_dispatch=local_dispatch(conn, entry, sent_id, http),
            observers=observers,
        )
    )
