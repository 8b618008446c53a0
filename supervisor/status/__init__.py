"""The status socket: newline-delimited JSON commands for operators and the CLI.

``protocol`` is the sans-io framing (lines in, requests out, replies encoded), ``server``
serves it over a Unix socket with peer-credential checks, ``commands/`` holds one module
per command whose docstring documents the wire message and the CLI usage, and ``client``
is the small standard-library client the CLI uses (SUPERVISOR.md §13, §14).
"""
