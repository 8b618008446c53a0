"""``${NAME}`` / ``${NAME:default}`` expansion: the grammar of WORKERS.md §1.3, both flavours.

Flavour A is textual over a whole file; flavour B walks string leaves and coerces whole placeholders.
"""

from __future__ import annotations

import math

from supervisor.config.interpolate import ENGINE_VERSION, MissingVariable, expand_text, expand_value


def text(source: str, **env: str) -> str:
    expanded, missing = expand_text(source, env)
    assert missing == []
    return expanded


def test_set_variable_is_substituted() -> None:
    assert text("port: ${PORT}", PORT="8080") == "port: 8080"


def test_default_used_when_unset() -> None:
    assert text("port: ${PORT:3111}") == "port: 3111"


def test_variable_set_to_empty_wins_over_default() -> None:
    assert text("x: '${X:fallback}'", X="") == "x: ''"


def test_empty_default_yields_empty_string() -> None:
    assert text("x: '${X:}'") == "x: ''"


def test_defaults_may_contain_colons() -> None:
    assert text("${REDIS_URL:redis://localhost:6379/0}") == "redis://localhost:6379/0"


def test_shell_style_dash_is_part_of_the_default() -> None:
    assert text("${X:-y}") == "-y"


def test_dollar_without_braces_is_untouched() -> None:
    assert text("cmd: echo $HOME and $X") == "cmd: echo $HOME and $X"


def test_unterminated_placeholder_is_untouched() -> None:
    assert text("cmd: echo ${X") == "cmd: echo ${X"


def test_no_nesting_first_brace_ends_the_placeholder() -> None:
    # ${A:${B}} → default "${B" then a literal "}".
    assert text("${A:${B}}") == "${B}"


def test_engine_version_token() -> None:
    assert text("v: ${SERVICE_VERSION:__III_ENGINE_VERSION__}") == f"v: {ENGINE_VERSION}"
    expanded, _ = expand_text("${V:__III_ENGINE_VERSION__}", {}, engine_version="9.9.9")
    assert expanded == "9.9.9"


def test_engine_version_token_only_as_the_whole_default() -> None:
    assert text("${V:x__III_ENGINE_VERSION__}") == "x__III_ENGINE_VERSION__"


def test_missing_variable_reported_with_line_and_left_in_place() -> None:
    source = "a: 1\nb: ${UNSET_VAR}\nc: ${ALSO_UNSET}\n"
    expanded, missing = expand_text(source, {})
    assert expanded == source
    assert missing == [MissingVariable("UNSET_VAR", 2), MissingVariable("ALSO_UNSET", 3)]


def test_comment_lines_are_interpolated_too() -> None:
    expanded, missing = expand_text("# port ${P:1}\n# ${NOPE}\n", {})
    assert expanded.startswith("# port 1\n")
    assert missing == [MissingVariable("NOPE", 2)]


def test_several_placeholders_on_one_line() -> None:
    assert text("${A:x}-${B:y}", B="z") == "x-z"


# -- flavour B -----------------------------------------------------------------------------------


def value(v: object, **env: str) -> object:
    expanded, missing = expand_value(v, env)
    assert missing == []
    return expanded


def test_whole_placeholder_is_coerced_to_an_integer() -> None:
    assert value("${PORT:3111}") == 3111
    assert value("  ${PORT}  ", PORT="8080") == 8080


def test_whole_placeholder_coerces_bools_floats_and_null() -> None:
    assert value("${X}", X="true") is True
    assert value("${X}", X="False") is False
    assert value("${X}", X="0.5") == 0.5
    assert value("${X}", X="1e3") == 1000.0
    assert value("${X}", X="null") is None
    assert math.isinf(value("${X}", X=".inf"))  # type: ignore[arg-type]


def test_words_leading_zeros_and_yaml11_booleans_stay_strings() -> None:
    for raw in ("hello", "007", "on", "off", "yes", "no", "0777"):
        assert value("${X}", X=raw) == raw


def test_empty_substitution_stays_empty_string() -> None:
    assert value("${X:}") == ""
    assert value("${X}", X="") == ""


def test_surrounding_text_or_several_placeholders_stay_strings() -> None:
    assert value("port ${P:3111}") == "port 3111"
    assert value("${A:1}${B:2}") == "12"


def test_walks_nested_values_and_leaves_keys_alone() -> None:
    source = {"${K:key}": ["${A:1}", {"b": "${B:x}"}], "n": 5, "t": True}
    assert value(source) == {"${K:key}": [1, {"b": "x"}], "n": 5, "t": True}


def test_missing_names_are_recorded_and_literals_kept() -> None:
    expanded, missing = expand_value({"a": "${NOPE}", "b": ["x ${NOPE} ${OTHER}"]}, {})
    assert expanded == {"a": "${NOPE}", "b": ["x ${NOPE} ${OTHER}"]}
    assert missing == ["NOPE", "OTHER"]


def test_non_string_leaves_pass_through() -> None:
    assert value([1, 2.5, None, False]) == [1, 2.5, None, False]
