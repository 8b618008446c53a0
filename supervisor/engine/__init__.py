"""The engine room: everything that speaks the worker protocol.

The bus as a synchronous core (registries, routing, the in-flight table; time is an argument),
the tables it is made of, the hooks around dispatch, completion and registration, the
``engine::*`` built-in functions, listeners, channels, and the trio edge that drives the core.
It may import ``supervisor.config``; never ``supervisor.supervision``.
"""
