"""The engine room: everything that speaks the worker protocol.

The bus as a synchronous core (``bus``: registries, routing, the in-flight table; time is an
argument), the tables it is made of (``functions``, ``triggers``, ``invocations``,
``connection``), the hooks around registration, dispatch and completion (``hooks``: the RED
metrics of ``metrics`` and the spans of ``tracing``), the ``engine::*`` built-ins (``builtins/``, one module
per family; ``builtin_call`` runs one), listeners, channels, and the trio edge that drives the
core (``edge``).
``runner.run_engine`` assembles them. It may import ``supervisor.config``; never
``supervisor.supervision``. Modules inside the room import each other directly, never
through this package.
"""

from supervisor.engine.bus import Bus, CallContext
from supervisor.engine.connection import Connection, Session
from supervisor.engine.edge import BusEdge
from supervisor.engine.errors import InvocationFailed
from supervisor.engine.functions import FunctionEntry, FunctionTable
from supervisor.engine.hooks import Hook, Hooks
from supervisor.engine.invocations import InvocationTable, Pending
from supervisor.engine.listener import BindError, Listener
from supervisor.engine.metrics import CallMetrics
from supervisor.engine.runner import Engine, build_bus, run_engine
from supervisor.engine.triggers import Binding, Provider, TriggerTable
from supervisor.engine.views import BusEvent, WorkerView

__all__ = [
    "Binding",
    "BindError",
    "Bus",
    "BusEdge",
    "BusEvent",
    "CallContext",
    "CallMetrics",
    "Connection",
    "Engine",
    "FunctionEntry",
    "FunctionTable",
    "Hook",
    "Hooks",
    "InvocationFailed",
    "InvocationTable",
    "Listener",
    "Pending",
    "Provider",
    "Session",
    "TriggerTable",
    "WorkerView",
    "build_bus",
    "run_engine",
]
