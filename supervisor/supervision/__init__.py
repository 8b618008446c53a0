"""The supervision room: everything about OS processes.

The state enum and transition table, the restart policy, the per-worker controller, the child
manager, spawn plan, keeper, log capture, sd_notify and the state directory. It sees the bus
only through ``BusLike``, which the engine implements and the unit tests fake.
It may import ``supervisor.config``; never ``supervisor.engine``.
"""
