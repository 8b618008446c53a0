"""``registerfunction.observe``: how a function's observers are delivered (OBSERVE.md §3.10, §6.3,
§6.4, §6.5), read once at registration and kept on the function entry (``entry.observe``).

Every field is optional on the wire; a missing object means auto delivery, no args, observable.
A malformed field is not a reason to refuse the registration (the function itself is fine):
it falls back to its default and the reader gets a warning to log naming the field.
"""

from __future__ import annotations

from typing import Any

import attrs

AUTO = "auto"
OWNER = "owner"


@attrs.frozen
class ObserveDescriptor:
    delivery: str = AUTO  # "auto" | "owner"
    args_format: Any = None  # a JSON Schema (object or boolean), verbatim; None: no args schema
    legacy_trigger_type: str | None = None
    allow: bool = True  # False: every observe of the function fails with NOT_OBSERVABLE


DEFAULT_DESCRIPTOR = ObserveDescriptor()


def read_descriptor(raw: Any) -> tuple[ObserveDescriptor, list[str]]:
    """The descriptor of a ``registerfunction.observe`` value, and warnings for what was wrong."""
    if raw is None:
        return DEFAULT_DESCRIPTOR, []
    if not isinstance(raw, dict):
        return DEFAULT_DESCRIPTOR, [
            f"observe must be an object, got {type(raw).__name__}: read as auto delivery"
        ]
    warnings: list[str] = []
    delivery = raw.get("delivery")
    if delivery is None:
        delivery = AUTO
    elif delivery not in (AUTO, OWNER):
        warnings.append(
            f"observe.delivery {str(delivery)[:64]!r} is not auto or owner: read as auto"
        )
        delivery = AUTO
    args_format = raw.get("args_format")
    if args_format is not None and not isinstance(args_format, dict | bool):
        warnings.append(
            f"observe.args_format must be a JSON Schema (object or boolean), got "
            f"{type(args_format).__name__}: ignored"
        )
        args_format = None
    legacy = raw.get("legacy_trigger_type")
    if legacy is not None and not (isinstance(legacy, str) and legacy.strip()):
        warnings.append("observe.legacy_trigger_type must be a non-empty string: ignored")
        legacy = None
    allow = raw.get("allow")
    if allow is None:
        allow = True
    elif not isinstance(allow, bool):
        warnings.append(
            f"observe.allow must be a boolean, got {type(allow).__name__}: read as true"
        )
        allow = True
    descriptor = ObserveDescriptor(delivery, args_format, legacy, allow)
    return (DEFAULT_DESCRIPTOR if descriptor == DEFAULT_DESCRIPTOR else descriptor), warnings
