"""The storage error types, in a module of their own so every adapter can raise them without
importing the interface or factory modules that import the adapters."""

from __future__ import annotations

__all__ = ["StorageClosedError", "StorageError", "StorageUnavailableError"]


class StorageError(Exception):
    """Base class of storage failures (the actors report them as ``*_ERROR``)."""


class StorageUnavailableError(StorageError):
    """The backend cannot be reached (Redis down, disk unwritable, ...)."""


class StorageClosedError(StorageError):
    """The store was used after ``aclose()``."""
