"""The ``iii-http-functions`` config block (WORKERS.md §4.1): the URL security settings every
HTTP-invoked function is checked against, at registration and on every call.

Read on every boot; there is no configuration-worker entry. ``url_allowlist`` holds glob
patterns (``*``, ``?``, ``[...]``, ``[!...]``) matched against the URL's host only; an invalid
pattern makes the block invalid, so the worker does not start (upstream fails worker creation).
"""

from __future__ import annotations

import re
from typing import Any, Final

import attrs

from manifests.blocks.strict import Invalid

__all__ = [
    "DEFAULTS",
    "DEFAULT_TIMEOUT_MS",
    "MAX_TIMEOUT_MS",
    "INVOKE_FUNCTION_ID",
    "REGISTER_FUNCTION_ID",
    "GlobError",
    "HttpFunctionsBlock",
    "SecurityConfig",
    "compile_glob",
    "request_timeout_ms",
]


class GlobError(ValueError):
    """A ``url_allowlist`` pattern that is not a valid glob."""


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A host glob as a case-insensitive regex matching the whole host.

    ``*`` is any run of characters, ``?`` one character, ``[abc]`` / ``[a-z]`` / ``[!abc]`` a
    class. Like upstream's glob syntax, ``**`` is allowed only as the whole pattern (it means
    the same as ``*`` there), three or more stars, an unclosed ``[`` and an empty ``[]`` are
    errors.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            run = len(pattern[i:]) - len(pattern[i:].lstrip("*"))
            if run > 2 or (run == 2 and pattern != "**"):
                raise GlobError(
                    f"invalid pattern {pattern!r}: wildcards are either `*` or a whole `**`"
                )
            out.append(".*")
            i += run
        elif ch == "?":
            out.append(".")
            i += 1
        elif ch == "[":
            j = i + 1
            negate = pattern[j : j + 1] == "!"
            j += negate
            start = j
            if pattern[j : j + 1] == "]":  # a leading `]` is a literal member
                j += 1
            end = pattern.find("]", j)
            if end < 0:
                raise GlobError(f"invalid pattern {pattern!r}: unclosed `[` at {i}")
            body = pattern[start:end]
            if not body:
                raise GlobError(f"invalid pattern {pattern!r}: empty character class at {i}")
            escaped = "".join("\\" + c if c in "\\^[]" else c for c in body)
            out.append(f"[{'^' if negate else ''}{escaped}]")
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _check_allowlist(_: object, __: object, value: tuple[str, ...]) -> None:
    for index, pattern in enumerate(value):
        try:
            compile_glob(pattern)
        except GlobError as exc:
            raise Invalid.one(str(exc), at=("url_allowlist", index)) from None


@attrs.frozen
class SecurityConfig:
    """``security:``. An empty (or absent) allowlist is treated as ``["*"]`` (any host)."""

    url_allowlist: tuple[str, ...] = attrs.field(default=(), validator=_check_allowlist)
    block_private_ips: bool = True
    require_https: bool = True

    def host_patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(compile_glob(p) for p in (self.url_allowlist or ("*",)))


@attrs.frozen
class HttpFunctionsBlock:
    security: SecurityConfig = attrs.Factory(SecurityConfig)


DEFAULTS: Final[dict[str, Any]] = {
    "security": {"url_allowlist": ["*"], "block_private_ips": True, "require_https": True}
}

# The actor's two functions; the engine calls them (and refuses nothing else to reach them).
REGISTER_FUNCTION_ID: Final = "iii-http-functions::register"  # validate one registration
INVOKE_FUNCTION_ID: Final = "iii-http-functions::invoke"  # make one call

# An invocation's request timeout (PROTOCOL.md §7.7, §10.2): its `timeout_ms`, else 30 s,
# capped at 60 s. The actor applies it; the engine bounds its wait for the actor by it.
DEFAULT_TIMEOUT_MS: Final = 30_000
MAX_TIMEOUT_MS: Final = 60_000


def request_timeout_ms(invocation: Any) -> int:
    """The timeout the actor applies to a registered ``invocation`` (one whose `timeout_ms`
    is not a positive integer was refused at registration: the default here)."""
    raw = invocation.get("timeout_ms") if isinstance(invocation, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        return DEFAULT_TIMEOUT_MS
    return min(raw, MAX_TIMEOUT_MS)
