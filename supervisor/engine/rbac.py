"""RBAC listeners as pure logic (PROTOCOL.md §13): the listener policy, the session an auth
function grants, the allow check, ``expose_functions`` filters and the registration-hook
inputs and merges.

Nothing here does I/O or waits: ``rbac_guard`` calls the functions (auth, hooks, middleware)
and feeds their answers through these parsers. Every parse failure is an ``RbacError`` whose
text is what the connecting client (``AUTH_ERROR``) or the log is told.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from supervisor.engine.connection import Session
from supervisor.engine.errors import DEFAULT
from transport import messages as m

# Callable by every session whatever the rules say (§13.4 step 4); forbidden_functions wins.
CARVE_OUT: Final = frozenset(
    {
        "engine::channels::create",
        "engine::workers::register",
        "engine::log::info",
        "engine::log::warn",
        "engine::log::error",
        "engine::log::debug",
        "engine::log::trace",
        "engine::baggage::get",
        "engine::baggage::set",
        "engine::baggage::get_all",
    }
)

_MATCH: Final = re.compile(r"""\s*match\((["'])(.*)\1\)\s*""", re.S)

Matcher = Callable[[str], bool]


class RbacError(ValueError):
    """An auth result or filter that does not parse; ``str()`` is the reason."""


# -- wildcards and filters ---------------------------------------------------------------


def wildcard(pattern: str) -> Matcher:
    """``*`` matches any run (also none); everything else is literal; anchored at both ends."""
    if pattern == "*":
        return lambda _: True
    if "*" not in pattern:
        return pattern.__eq__
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.S)
    return lambda text: regex.fullmatch(text) is not None


def match_form(text: str) -> str | None:
    """The pattern of ``match("p")`` / ``match('p')``, or None if ``text`` is not that form."""
    found = _MATCH.fullmatch(text)
    return found.group(2) if found else None


def grant(text: str) -> Matcher:
    """A session grant: an exact id or a wildcard, bare or written ``match("...")``."""
    pattern = match_form(text)
    return wildcard(text if pattern is None else pattern)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: ``true`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _value_matcher(expected: Any) -> Callable[[Any], bool]:
    pattern = match_form(expected) if isinstance(expected, str) else None
    if pattern is not None:
        test = wildcard(pattern)
        return lambda value: isinstance(value, str) and test(value)
    return lambda value: json_equal(value, expected)


@attrs.frozen
class ExposeRule:
    """One ``expose_functions`` entry, compiled (§13.5)."""

    namespace: str
    id_match: Matcher | None = None
    metadata: tuple[tuple[str, Callable[[Any], bool]], ...] = ()

    def matches(self, function_id: str, namespace: str, metadata: Any) -> bool:
        if namespace != self.namespace:
            return False
        if self.id_match is not None:
            return self.id_match(function_id)
        if not isinstance(metadata, dict):
            return False
        return all(key in metadata and test(metadata[key]) for key, test in self.metadata)


def compile_rule(raw: Any) -> ExposeRule:
    """A filter as the config gives it (validated by manifests/blocks/worker_manager.py)."""
    if isinstance(raw, str):
        pattern = match_form(raw)
        if pattern is None:
            raise RbacError(f'a string filter must have the form match("pattern"), got {raw!r}')
        return ExposeRule(DEFAULT, id_match=wildcard(pattern))
    if not isinstance(raw, dict):
        raise RbacError(f"a filter must be a string or a mapping, got {raw!r}")
    namespace = raw.get("namespace") or DEFAULT
    if "match" in raw:
        return ExposeRule(namespace, id_match=wildcard(str(raw["match"])))
    metadata = raw.get("metadata")
    if not isinstance(metadata, dict):
        raise RbacError("a filter needs exactly one of match or metadata")
    return ExposeRule(
        namespace, metadata=tuple((str(k), _value_matcher(v)) for k, v in metadata.items())
    )


# -- the listener and the session ----------------------------------------------------------


@attrs.frozen
class ListenerPolicy:
    """What one listener's config says: the rbac block (if any) and the middleware."""

    rbac: bool = False  # has an rbac block: the allow check's step 6 applies
    auth_function_id: str | None = None
    expose: tuple[ExposeRule, ...] = ()
    on_function_registration: str | None = None
    on_trigger_registration: str | None = None
    on_trigger_type_registration: str | None = None
    middleware_function_id: str | None = None

    @property
    def machinery(self) -> frozenset[str]:
        """The function ids this listener calls on its own: auth, hooks, middleware."""
        ids = (
            self.auth_function_id,
            self.on_function_registration,
            self.on_trigger_registration,
            self.on_trigger_type_registration,
            self.middleware_function_id,
        )
        return frozenset(i for i in ids if i is not None)

    @classmethod
    def from_config(cls, config: Any) -> ListenerPolicy | None:
        """From a ``ListenerBlock``; None when it has neither rbac nor middleware."""
        rbac = config.rbac
        middleware = config.middleware_function_id
        if rbac is None and middleware is None:
            return None
        if rbac is None:
            return cls(middleware_function_id=middleware)
        return cls(
            rbac=True,
            auth_function_id=rbac.auth_function_id,
            expose=tuple(compile_rule(raw) for raw in rbac.expose_functions),
            on_function_registration=rbac.on_function_registration_function_id,
            on_trigger_registration=rbac.on_trigger_registration_function_id,
            on_trigger_type_registration=rbac.on_trigger_type_registration_function_id,
            middleware_function_id=middleware,
        )

    def denial(
        self, session: RbacSession, function_id: str, namespace: str, metadata: Any
    ) -> str | None:
        """The allow check (§13.4): None if allowed, else the FORBIDDEN text (§13.9)."""
        if function_id in session.forbidden_functions:
            return f"function '{function_id}' not allowed (remove from rbac.forbidden_functions)"
        grants = session.namespaces.get(namespace)
        if grants and any(test(function_id) for test in grants):
            return None
        if namespace == DEFAULT and function_id in session.allowed_functions:
            return None
        if function_id in CARVE_OUT or not self.rbac:
            return None
        if any(rule.matches(function_id, namespace, metadata) for rule in self.expose):
            return None
        return f"function '{function_id}' not allowed (add to rbac.expose_functions)"


@attrs.define(eq=False)
class RbacSession(Session):
    """The session of a connection on an RBAC or middleware listener (§13.3)."""

    policy: ListenerPolicy = attrs.field(factory=ListenerPolicy)
    namespaces: dict[str, tuple[Matcher, ...]] = attrs.field(factory=dict)
    allowed_functions: frozenset[str] = frozenset()
    forbidden_functions: frozenset[str] = frozenset()
    allowed_trigger_types: frozenset[str] | None = None  # None: any type
    function_registration_prefix: str | None = None
    renamed: dict[str, str] = attrs.field(factory=dict)  # stored id -> id as the worker sent it
    held: deque[Any] | None = None  # registrations waiting for the namespace (rbac_guard)

    def local_dispatch_allowed(self, namespace: str, function_id: str) -> bool:
        """Not behind a middleware, and the session may call it (OBSERVE.md §4.2 rules 3, 4).
        Without the function's metadata a metadata filter cannot grant it: the answer errs on
        the side of routing."""
        if self.policy.middleware_function_id is not None:
            return False
        return self.policy.denial(self, function_id, namespace, None) is None

    def sent_id(self, stored_id: str) -> str:
        return self.renamed.get(stored_id, stored_id)

    def namespace_refusal(self, declared: str) -> str | None:
        """engine::workers::register declaring a namespace outside a scoped session."""
        if not self.namespaces or declared in self.namespaces:
            return None
        permitted = ", ".join(sorted(self.namespaces))
        return f"namespace '{declared}' not allowed for this session (permitted: {permitted})"

    def prefixed(self, function_id: str) -> str:
        prefix = self.function_registration_prefix
        return f"{prefix}::{function_id}" if prefix else function_id


def permissive_session(policy: ListenerPolicy) -> RbacSession:
    """No auth function: no grants, nothing forbidden, any registration (§13.3)."""
    return RbacSession(policy=policy)


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RbacError(f"invalid auth result: `{key}` must be an array of strings")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise RbacError(f"invalid auth result: `{key}` must be a boolean")
    return value


def parse_auth_result(raw: Any, policy: ListenerPolicy) -> RbacSession:
    """The auth function's result as a session; ``null`` in any key means its default."""
    if raw is None:
        raise RbacError("auth function returned no result")
    if not isinstance(raw, dict):
        raise RbacError(f"invalid auth result: expected an object, got {type(raw).__name__}")
    session = RbacSession(policy=policy, allow_trigger_type_registration=False)
    namespaces = raw.get("namespaces")
    if namespaces is not None:
        if not isinstance(namespaces, dict):
            raise RbacError("invalid auth result: `namespaces` must be an object")
        session.namespaces = {
            str(ns): tuple(grant(g) for g in _strings(grants, f"namespaces.{ns}"))
            for ns, grants in namespaces.items()
        }
    if raw.get("allowed_functions") is not None:
        session.allowed_functions = frozenset(
            _strings(raw["allowed_functions"], "allowed_functions")
        )
    if raw.get("forbidden_functions") is not None:
        session.forbidden_functions = frozenset(
            _strings(raw["forbidden_functions"], "forbidden_functions")
        )
    if raw.get("allowed_trigger_types") is not None:
        session.allowed_trigger_types = frozenset(
            _strings(raw["allowed_trigger_types"], "allowed_trigger_types")
        )
    for key in ("allow_trigger_type_registration", "allow_function_registration"):
        if raw.get(key) is not None:
            setattr(session, key, _bool(raw[key], key))
    prefix = raw.get("function_registration_prefix")
    if prefix is not None:
        if not isinstance(prefix, str):
            raise RbacError("invalid auth result: `function_registration_prefix` must be a string")
        session.function_registration_prefix = prefix or None
    context = raw.get("context")
    if context is not None:
        if not isinstance(context, dict):
            raise RbacError("invalid auth result: `context` must be an object")
        session.context = context
    return session


# -- the auth function's input -------------------------------------------------------------


def _visible_ascii(value: bytes) -> bool:
    return all(b == 9 or 32 <= b <= 126 for b in value)


def auth_input(
    headers: Iterable[tuple[bytes, bytes]], query: str, ip_address: str | None
) -> dict[str, Any]:
    """``{headers, query_params, ip_address}`` as §13.3 describes them."""
    out_headers: dict[str, str] = {}
    for name, value in headers:
        if _visible_ascii(value):
            out_headers[name.decode("latin-1").lower()] = value.decode("ascii")
    params: dict[str, list[str]] = {}
    for part in query.split("&") if query else ():
        key, _, raw = part.partition("=")
        if key:
            params.setdefault(key, []).append(raw)
    return {"headers": out_headers, "query_params": params, "ip_address": ip_address or ""}


# -- registration hooks (§13.8) ----------------------------------------------------------------


def function_hook_input(msg: m.RegisterFunction, namespace: str, context: Any) -> dict[str, Any]:
    return {
        "function_id": msg.id,
        "description": msg.description,
        "metadata": msg.metadata,
        "namespace": namespace,
        "context": context,
    }


def trigger_type_hook_input(msg: m.RegisterTriggerType, context: Any) -> dict[str, Any]:
    return {"trigger_type_id": msg.id, "description": msg.description, "context": context}


def trigger_hook_input(msg: m.RegisterTrigger, context: Any) -> dict[str, Any]:
    return {
        "trigger_id": msg.id,
        "trigger_type": msg.trigger_type,
        "function_id": msg.function_id,
        "config": msg.config,
        "metadata": msg.metadata,
        "namespace": msg.namespace or DEFAULT,
        "context": context,
    }


def _replace(
    result: Mapping[str, Any], strings: Mapping[str, str], anys: Mapping[str, str]
) -> dict[str, Any]:
    """The message fields a hook result replaces: string keys only by strings."""
    changes: dict[str, Any] = {}
    for key, field in strings.items():
        if isinstance(result.get(key), str):
            changes[field] = result[key]
    for key, field in anys.items():
        if key in result:
            changes[field] = result[key]
    return changes


def hook_verdict(result: Any) -> dict[str, Any]:
    """An allowing hook answers with an object; anything else denies."""
    if not isinstance(result, dict):
        shown = "no result" if result is None else f"a {type(result).__name__}"
        raise RbacError(f"the hook returned {shown}, not an object")
    return result


def merge_function_hook(msg: m.RegisterFunction, result: Any) -> m.RegisterFunction:
    changes = _replace(
        hook_verdict(result),
        {"function_id": "id", "description": "description"},
        {"metadata": "metadata"},
    )
    return attrs.evolve(msg, **changes)


def merge_trigger_type_hook(msg: m.RegisterTriggerType, result: Any) -> m.RegisterTriggerType:
    changes = _replace(
        hook_verdict(result), {"trigger_type_id": "id", "description": "description"}, {}
    )
    return attrs.evolve(msg, **changes)


def merge_trigger_hook(msg: m.RegisterTrigger, result: Any) -> m.RegisterTrigger:
    changes = _replace(
        hook_verdict(result),
        {"trigger_id": "id", "trigger_type": "trigger_type", "function_id": "function_id"},
        {"config": "config"},
    )
    return attrs.evolve(msg, **changes)
