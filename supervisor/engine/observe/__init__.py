"""The observe family of SDK 0.25 (OBSERVE.md): observers of functions whose events invoke
target functions, the owner handshake, local dispatch reports and ``engine::observers::get``.

``table`` is the sans-I/O observer table; ``spec``, ``envelope``, ``argsformat`` are its pure
pieces; ``hook`` plugs it into the bus (completion hook, observer directory, message routes,
timers); ``filter`` is the iii-filter v1 evaluator.
"""
