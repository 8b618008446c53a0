"""Errors the engine gives callers: the exception built-ins raise, and the wire error body.

``InvocationFailed`` carries a protocol error code; the bus turns it into ``ErrorBody``.
"""

from __future__ import annotations

from transport import messages as m

DEFAULT = "default"
INVALID_NAMESPACE_MSG = (
    "`{field}` is empty: it was named and left blank. Give it a name, or omit it to use `default`."
)


class InvocationFailed(Exception):
    """A call through the bus ended with an error body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def error(code: str, message: str) -> m.ErrorBody:
    return m.ErrorBody(code=code, message=message)


def blank(value: str | None) -> bool:
    """A name that was given but is empty (``None`` means "not given": the default)."""
    return value is not None and not value.strip()
