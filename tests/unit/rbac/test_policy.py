"""The pure RBAC policy (PROTOCOL.md §13): wildcards, expose filters, the allow check's order,
the carve-out, the prefix, the auth result and the auth input, the hook merges."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from manifests.blocks.worker_manager import ListenerBlock, RbacBlock
from supervisor.engine.rbac import (
    CARVE_OUT,
    ListenerPolicy,
    RbacError,
    RbacSession,
    auth_input,
    compile_rule,
    function_hook_input,
    json_equal,
    merge_function_hook,
    merge_trigger_hook,
    merge_trigger_type_hook,
    parse_auth_result,
    permissive_session,
    trigger_hook_input,
    wildcard,
)
from transport import messages as m

EXPOSED = "function '{}' not allowed (add to rbac.expose_functions)"


def policy(*filters: Any, rbac: bool = True, middleware: str | None = None) -> ListenerPolicy:
    block = ListenerBlock(
        rbac=RbacBlock(expose_functions=tuple(filters)) if rbac else None,
        middleware_function_id=middleware,
    )
    found = ListenerPolicy.from_config(block)
    assert found is not None
    return found


def session(pol: ListenerPolicy, **auth: Any) -> RbacSession:
    return parse_auth_result(auth, pol)


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("api::*", "api::users::list", True),
        ("*::public", "x::y::public", True),
        ("api::*::read", "api::orders::read", True),
        ("api::*::read", "api::orders::write", False),
        ("*", "", True),
        ("api::*", "api::", True),
        ("api::*", "xapi::a", False),
        ("a.b", "axb", False),  # everything but * is literal
        ("a+(b)", "a+(b)", True),
        ("exact", "exact", True),
        ("exact", "exactly", False),  # anchored at the end
    ],
)
def test_wildcard_is_anchored_and_literal_but_for_the_star(
    pattern: str, text: str, expected: bool
) -> None:
    assert wildcard(pattern)(text) is expected


def test_json_equality_does_not_confuse_booleans_with_numbers() -> None:
    assert json_equal(True, True)
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert json_equal(1, 1.0)
    assert json_equal({"a": [1, "x"]}, {"a": [1, "x"]})
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal(None, "null")


def test_match_filter_applies_in_default_only_unless_it_names_a_namespace() -> None:
    rule = compile_rule('match("api::*")')
    assert rule.matches("api::x", "default", None)
    assert not rule.matches("api::x", "orders", None)
    scoped = compile_rule({"match": "api::*", "namespace": "orders"})
    assert scoped.matches("api::x", "orders", None)
    assert not scoped.matches("api::x", "default", None)
    single = compile_rule("match('engine::functions::list')")
    assert single.matches("engine::functions::list", "default", None)


def test_metadata_filter_needs_every_key_and_matches_wildcards_on_strings() -> None:
    rule = compile_rule({"metadata": {"ew_public": True, "tier": 'match("gold*")'}})
    assert rule.matches("f", "default", {"ew_public": True, "tier": "golden", "x": 1})
    assert not rule.matches("f", "default", {"ew_public": True})  # a key is missing
    assert not rule.matches("f", "default", {"ew_public": 1, "tier": "gold"})  # 1 is not true
    assert not rule.matches("f", "default", {"ew_public": True, "tier": 7})  # not a string
    assert not rule.matches("f", "default", None)  # no metadata: no match
    assert not rule.matches("f", "default", ["ew_public"])


def test_a_filter_that_is_not_match_form_is_refused() -> None:
    with pytest.raises(RbacError, match="match"):
        compile_rule("api::*")


def test_allow_check_order_forbidden_grants_allowed_carve_out_expose() -> None:
    pol = policy('match("pub::*")')
    s = session(
        pol,
        namespaces={"orders": ["svc::*", 'match("x::y")']},
        allowed_functions=["extra::one"],
        forbidden_functions=["pub::secret", "engine::channels::create"],
    )
    forbidden = "function '{}' not allowed (remove from rbac.forbidden_functions)"
    # 1. forbidden wins over expose and over the carve-out
    assert pol.denial(s, "pub::secret", "default", None) == forbidden.format("pub::secret")
    assert pol.denial(s, "engine::channels::create", "default", None) == forbidden.format(
        "engine::channels::create"
    )
    # 2. scoped grants, bare or match("...")
    assert pol.denial(s, "svc::a", "orders", None) is None
    assert pol.denial(s, "x::y", "orders", None) is None
    assert pol.denial(s, "svc::a", "default", None) == EXPOSED.format("svc::a")
    # 3. allowed_functions: exact, default only
    assert pol.denial(s, "extra::one", "default", None) is None
    assert pol.denial(s, "extra::one", "orders", None) is not None
    assert pol.denial(s, "extra::on", "default", None) is not None
    # 4. carve-out
    for fid in CARVE_OUT - {"engine::channels::create"}:
        assert pol.denial(s, fid, "default", None) is None
    # 6. expose_functions
    assert pol.denial(s, "pub::x", "default", None) is None
    assert pol.denial(s, "priv::x", "default", None) == EXPOSED.format("priv::x")
    assert pol.denial(s, "engine::workers::list", "default", None) is not None


def test_without_rbac_block_everything_but_forbidden_is_allowed() -> None:
    pol = policy(rbac=False, middleware="mw")
    s = permissive_session(pol)
    assert pol.denial(s, "anything::at::all", "ns", None) is None
    assert pol.middleware_function_id == "mw"
    assert ListenerPolicy.from_config(ListenerBlock()) is None


def test_empty_expose_list_allows_only_grants_and_the_carve_out() -> None:
    pol = policy()
    s = permissive_session(pol)
    assert pol.denial(s, "engine::workers::register", "default", None) is None
    assert pol.denial(s, "a::b", "default", None) == EXPOSED.format("a::b")


def test_auth_result_model_dump_with_nulls_is_a_session() -> None:
    pol = policy()
    s = parse_auth_result(
        {
            "namespaces": {},
            "allowed_functions": [],
            "forbidden_functions": [],
            "allowed_trigger_types": None,
            "allow_trigger_type_registration": False,
            "allow_function_registration": True,
            "function_registration_prefix": None,
            "context": {"role": "admin"},
        },
        pol,
    )
    assert s.allowed_trigger_types is None
    assert s.function_registration_prefix is None
    assert s.context == {"role": "admin"}
    assert s.allow_function_registration
    assert not s.allow_trigger_type_registration


def test_auth_result_defaults_differ_from_the_permissive_session() -> None:
    pol = policy()
    assert not parse_auth_result({}, pol).allow_trigger_type_registration
    assert permissive_session(pol).allow_trigger_type_registration
    assert parse_auth_result({}, pol).allow_function_registration


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "auth function returned no result"),
        ([], "expected an object, got list"),
        ({"allowed_functions": "a"}, "`allowed_functions` must be an array of strings"),
        ({"forbidden_functions": [1]}, "`forbidden_functions` must be an array of strings"),
        ({"namespaces": []}, "`namespaces` must be an object"),
        ({"namespaces": {"a": "x"}}, "`namespaces.a` must be an array of strings"),
        ({"allow_function_registration": "yes"}, "`allow_function_registration` must be a bool"),
        ({"function_registration_prefix": 3}, "`function_registration_prefix` must be a string"),
        ({"context": "c"}, "`context` must be an object"),
    ],
)
def test_a_bad_auth_result_names_what_is_wrong(raw: Any, reason: str) -> None:
    with pytest.raises(RbacError, match=reason.replace("(", r"\(")):
        parse_auth_result(raw, policy())


def test_namespace_scope_lists_permitted_keys_sorted() -> None:
    s = session(policy(), namespaces={"zeta": [], "alpha": ["a"]})
    assert s.namespace_refusal("alpha") is None
    assert s.namespace_refusal("other") == (
        "namespace 'other' not allowed for this session (permitted: alpha, zeta)"
    )
    assert session(policy()).namespace_refusal("anything") is None


def test_prefix_is_joined_with_two_colons() -> None:
    assert session(policy(), function_registration_prefix="tenant").prefixed("x") == "tenant::x"
    assert session(policy()).prefixed("x") == "x"
    assert session(policy(), function_registration_prefix="").prefixed("x") == "x"


def test_auth_input_headers_lowercased_last_wins_non_ascii_dropped() -> None:
    data = auth_input(
        [
            (b"Host", b"127.0.0.1:49135"),
            (b"X-Test-Token", b"first"),
            (b"x-test-token", b"valid-token"),
            (b"X-Name", "Zoë".encode()),
        ],
        "api_key=k1&api_key=k%202&flag&=skipped&a=b=c",
        "127.0.0.1",
    )
    assert data["headers"] == {"host": "127.0.0.1:49135", "x-test-token": "valid-token"}
    assert data["query_params"] == {"api_key": ["k1", "k%202"], "flag": [""], "a": ["b=c"]}
    assert data["ip_address"] == "127.0.0.1"
    assert auth_input([], "", None) == {"headers": {}, "query_params": {}, "ip_address": ""}


def test_function_hook_replaces_strings_only_and_metadata_even_by_null() -> None:
    msg = m.RegisterFunction(id="f", description="d", metadata={"a": 1})
    assert function_hook_input(msg, "default", {"c": 1}) == {
        "function_id": "f",
        "description": "d",
        "metadata": {"a": 1},
        "namespace": "default",
        "context": {"c": 1},
    }
    # model_dump() of an empty result: every key, unset ones null
    kept = merge_function_hook(msg, {"function_id": None, "description": None, "metadata": None})
    assert (kept.id, kept.description, kept.metadata) == ("f", "d", None)
    assert merge_function_hook(msg, {}) == msg
    renamed = merge_function_hook(msg, {"function_id": "g", "description": 5})
    assert (renamed.id, renamed.description) == ("g", "d")


@pytest.mark.parametrize("answer", [None, [], "ok", 1])
def test_a_hook_that_does_not_answer_an_object_denies(answer: Any) -> None:
    with pytest.raises(RbacError, match="not an object"):
        merge_function_hook(m.RegisterFunction(id="f"), answer)


def test_trigger_hooks_merge_their_keys() -> None:
    trig = m.RegisterTrigger(id="t", trigger_type="cron", function_id="f", config={"x": 1})
    assert trigger_hook_input(trig, {})["namespace"] == "default"
    merged = merge_trigger_hook(
        trig, {"trigger_id": None, "trigger_type": "cron2", "function_id": "g", "config": None}
    )
    assert (merged.id, merged.trigger_type, merged.function_id, merged.config) == (
        "t",
        "cron2",
        "g",
        None,
    )
    ttype = m.RegisterTriggerType(id="tt", description="d")
    assert attrs.asdict(merge_trigger_type_hook(ttype, {"trigger_type_id": "u"}))["id"] == "u"
