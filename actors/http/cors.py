"""CORS (WORKERS.md §3.8): pre-flight answers and the headers added to every response.

``cors`` absent → permissive (any origin, method and request header). ``cors`` present →
origins from ``allowed_origins`` (empty or ``"*"`` → any; otherwise exact matches), methods
from ``allowed_methods`` (empty → any), request headers always any, credentials never.
"""

from __future__ import annotations

import re

from manifests.blocks.http import HttpCors

Headers = list[tuple[str, str]]

_VALID_ORIGIN = re.compile(r"[\x21-\x7e]+\Z")
_VARY = ("vary", "origin, access-control-request-method, access-control-request-headers")


class CorsPolicy:
    def __init__(self, settings: HttpCors | None) -> None:
        self.any_origin = True
        self.origins: frozenset[str] = frozenset()
        methods = "*"
        if settings is not None:
            origins = [o for o in settings.allowed_origins if _VALID_ORIGIN.match(o)]
            if origins and "*" not in origins:
                self.any_origin = False
                self.origins = frozenset(origins)
            if settings.allowed_methods:
                methods = ", ".join(m.strip().upper() for m in settings.allowed_methods)
        self.allow_methods = methods
        self._simple_any: Headers = [
            ("access-control-allow-origin", "*"),
            ("access-control-expose-headers", "*"),
        ]

    @staticmethod
    def is_preflight(method: str, headers: list[tuple[bytes, bytes]]) -> bool:
        if method != "OPTIONS":
            return False
        return any(name == b"access-control-request-method" for name, _ in headers)

    def _allow_origin(self, origin: str | None) -> str | None:
        if self.any_origin:
            return "*"
        if origin is not None and origin in self.origins:
            return origin
        return None

    def preflight_headers(self, origin: str | None) -> Headers:
        out: Headers = []
        allowed = self._allow_origin(origin)
        if allowed is not None:
            out.append(("access-control-allow-origin", allowed))
        out.append(("access-control-allow-methods", self.allow_methods))
        out.append(("access-control-allow-headers", "*"))
        if not self.any_origin:
            out.append(_VARY)
        return out

    def response_headers(self, origin: str | None) -> Headers:
        """Headers added to every non-pre-flight response."""
        if self.any_origin:
            return self._simple_any
        allowed = self._allow_origin(origin)
        if allowed is None:
            return [_VARY]
        return [
            ("access-control-allow-origin", allowed),
            ("access-control-expose-headers", "*"),
            _VARY,
        ]


def origin_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"origin":
            return value.decode("latin-1")
    return None
