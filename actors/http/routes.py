"""The route table: ``http`` trigger bindings → routes, and request path → route (pure).

WORKERS.md §3.2. A route is keyed by ``METHOD:path-without-leading-slash`` (the root stays
``/``); registering the same key again replaces it (last one wins). ``:name`` segments are
parameters matching exactly one non-empty segment; a static segment beats a parameter in the
same position. Two routes of one method whose paths have the same shape but different
parameter names conflict. Trailing slashes are significant.
"""

from __future__ import annotations

from typing import Any

import attrs

SUPPORTED_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})

# A path shape: one entry per segment, the static text or ``None`` for a parameter.
Shape = tuple[str | None, ...]


class RouteError(ValueError):
    """A trigger config that cannot become a route (the registration is refused)."""


class RouteConflict(RouteError):
    pass


@attrs.frozen
class Route:
    trigger_id: str
    method: str
    api_path: str  # exactly as registered: what the payload's ``path`` carries
    function_id: str
    namespace: str | None = None
    metadata: Any = None
    condition_function_id: str | None = None
    middleware_function_ids: tuple[str, ...] = ()
    # derived
    key: str = ""
    display: str = ""  # "GET /users/:id"
    shape: Shape = ()
    params: tuple[tuple[int, str], ...] = ()  # (segment index, parameter name)
    routable: bool = True


def split_path(path: str) -> list[str]:
    """``/a/b`` → ``["a", "b"]``; ``/`` → ``[""]``; ``/a/`` → ``["a", ""]``."""
    return path[1:].split("/") if path.startswith("/") else path.split("/")


def route_from_trigger(
    trigger_id: str,
    function_id: str,
    config: Any,
    *,
    namespace: str | None = None,
    metadata: Any = None,
) -> Route:
    """Read an ``http`` trigger's config (§3.2); raises ``RouteError`` when it is unusable."""
    if not isinstance(config, dict):
        raise RouteError("api_path is required for http triggers")
    api_path = config.get("api_path")
    if api_path is None:
        raise RouteError("api_path is required for http triggers")
    if not isinstance(api_path, str):
        raise RouteError("api_path must be a string")
    method_raw = config.get("http_method")
    if method_raw is None:
        method_raw = "GET"
    if not isinstance(method_raw, str):
        raise RouteError("http_method must be a string")
    method = method_raw.upper()
    condition = config.get("condition_function_id")
    if condition is not None and not isinstance(condition, str):
        raise RouteError("condition_function_id must be a string")
    mw_raw = config.get("middleware_function_ids")
    middleware = tuple(x for x in mw_raw if isinstance(x, str)) if isinstance(mw_raw, list) else ()

    stripped = api_path[1:] if api_path.startswith("/") else api_path
    normalized = "/" + stripped
    segments = split_path(normalized)
    shape: list[str | None] = []
    params: list[tuple[int, str]] = []
    for i, seg in enumerate(segments):
        if len(seg) > 1 and seg.startswith(":"):
            shape.append(None)
            params.append((i, seg[1:]))
        else:
            shape.append(seg)
    return Route(
        trigger_id=trigger_id,
        method=method,
        api_path=api_path,
        function_id=function_id,
        namespace=namespace,
        metadata=metadata,
        condition_function_id=condition or None,
        middleware_function_ids=middleware,
        key=f"{method}:{stripped or '/'}",
        display=f"{method} {normalized}",
        shape=tuple(shape),
        params=tuple(params),
        routable=method in SUPPORTED_METHODS,
    )


@attrs.frozen
class Match:
    route: Route
    path_params: dict[str, str]


@attrs.frozen
class MethodNotAllowed:
    allowed: tuple[str, ...]


@attrs.frozen
class NotFound:
    pass


NOT_FOUND = NotFound()


def _shape_order(shape: Shape) -> tuple[tuple[int, str], ...]:
    # Static segments sort before parameters position by position: the most specific first.
    return tuple((0, s) if s is not None else (1, "") for s in shape)


class RouteTable:
    """Routes grouped by shape; lookups are by segment count, then most specific shape first."""

    def __init__(self) -> None:
        self._by_key: dict[str, Route] = {}
        self._by_shape: dict[Shape, dict[str, Route]] = {}
        # segment count → shapes, most specific first (rebuilt on every change)
        self._index: dict[int, list[tuple[Shape, dict[str, Route]]]] = {}
        self._static: dict[Shape, dict[str, Route]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def routes(self) -> list[Route]:
        return list(self._by_key.values())

    def add(self, route: Route) -> Route | None:
        """Install ``route``; returns the route it replaced. Raises ``RouteConflict``."""
        if not route.routable:
            return None
        methods = self._by_shape.get(route.shape)
        existing = methods.get(route.method) if methods else None
        if existing is not None and existing.key != route.key:
            raise RouteConflict(
                f"Route '{route.display}' conflicts with already-registered route "
                f"'{existing.display}': routes with identical structure but different "
                "path-parameter names are not supported"
            )
        self._by_key[route.key] = route
        self._by_shape.setdefault(route.shape, {})[route.method] = route
        self._rebuild()
        return existing

    def remove(self, trigger_id: str, key: str) -> bool:
        """Remove the route at ``key`` if ``trigger_id`` still owns it (else a no-op)."""
        route = self._by_key.get(key)
        if route is None or route.trigger_id != trigger_id:
            return False
        del self._by_key[key]
        methods = self._by_shape[route.shape]
        del methods[route.method]
        if not methods:
            del self._by_shape[route.shape]
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        index: dict[int, list[tuple[Shape, dict[str, Route]]]] = {}
        static: dict[Shape, dict[str, Route]] = {}
        for shape, methods in self._by_shape.items():
            if None in shape:
                index.setdefault(len(shape), []).append((shape, methods))
            else:
                static[shape] = methods
        for shapes in index.values():
            shapes.sort(key=lambda item: _shape_order(item[0]))
        self._index = index
        self._static = static

    def match(self, method: str, path: str) -> Match | MethodNotAllowed | NotFound:
        """Route a request. A ``HEAD`` with no ``HEAD`` route is served by the ``GET`` route."""
        segments = split_path(path)
        allowed: set[str] = set()
        methods = self._static.get(tuple(segments))
        if methods is not None:
            route = methods.get(method)
            if route is None and method == "HEAD":
                route = methods.get("GET")
            if route is not None:
                return Match(route, {})
            allowed.update(methods)
        for shape, methods in self._index.get(len(segments), ()):
            for want, got in zip(shape, segments, strict=True):
                if want is None:
                    if not got:
                        break
                elif want != got:
                    break
            else:
                route = methods.get(method)
                if route is None and method == "HEAD":
                    route = methods.get("GET")
                if route is not None:
                    return Match(route, {name: segments[i] for i, name in route.params})
                allowed.update(methods)
        if allowed:
            return MethodNotAllowed(tuple(sorted(allowed)))
        return NOT_FOUND
