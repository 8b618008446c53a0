"""How an actor process ends: the exit codes the supervisor's restart policy reads (sysexits),
and :class:`ActorExit`, which a serve function raises to end with one of them."""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_CANTCREAT", "EXIT_CONFIG", "EXIT_UNAVAILABLE", "ActorExit"]

EXIT_CONFIG: Final = 78  # EX_CONFIG: the supervisor does not retry a bad config as-is
EXIT_UNAVAILABLE: Final = 69  # EX_UNAVAILABLE: a backend is down; the restart policy retries
EXIT_CANTCREAT: Final = 73  # EX_CANTCREAT: a directory the actor must write is unusable


class ActorExit(Exception):
    """End the actor with ``code`` after one error line (``message`` with ``fields``)."""

    def __init__(self, code: int, message: str, **fields: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields
