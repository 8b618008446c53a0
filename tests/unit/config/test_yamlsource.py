"""The line-recording YAML loader: YAML 1.2 core typing, duplicate keys, syntax errors, lines.

These are the foundations every other message's ``<file>:<line>`` rests on.
"""

from __future__ import annotations

from manifests.yamlsource import load_yaml, resolve_scalar


def test_core_schema_typing() -> None:
    doc = load_yaml(
        "a: 1\nb: 007\nc: on\nd: yes\ne: 1.5\nf:\ng: ~\nh: '3'\ni: 0x1F\nj: 2024-01-01\n"
    )
    assert doc.data == {
        "a": 1,
        "b": "007",
        "c": "on",
        "d": "yes",
        "e": 1.5,
        "f": None,
        "g": None,
        "h": "3",
        "i": 31,
        "j": "2024-01-01",
    }


def test_resolve_scalar_edges() -> None:
    assert resolve_scalar("") == ""
    assert resolve_scalar("-5") == -5
    assert resolve_scalar("+5") == 5
    assert resolve_scalar("0") == 0
    assert resolve_scalar("0o17") == 15
    assert resolve_scalar("TRUE") is True
    assert resolve_scalar("Null") is None
    assert resolve_scalar("1_000") == "1_000"


def test_lines_of_keys_and_items() -> None:
    doc = load_yaml("workers:\n  - name: a\n  - name: b\n    config:\n      port: 1\n")
    assert doc.line_of(("workers",)) == 1
    assert doc.line_of(("workers", 0)) == 2
    assert doc.line_of(("workers", 1, "config", "port")) == 5
    assert doc.line_of(("workers", 1, "config", "port", "deeper")) == 5  # nearest ancestor


def test_duplicate_keys_are_reported_with_both_lines_and_first_wins() -> None:
    doc = load_yaml("name: a\nother: 1\nname: b\n")
    assert doc.data == {"name": "a", "other": 1}
    [issue] = doc.issues
    assert issue.line == 3
    assert issue.path == ("name",)
    assert issue.message == "duplicate key 'name' (lines 1 and 3)"


def test_nested_duplicate_keys() -> None:
    doc = load_yaml("scripts:\n  start: a\n  start: b\n")
    [issue] = doc.issues
    assert issue.path == ("scripts", "start")
    assert "lines 2 and 3" in issue.message


def test_merge_keys_are_not_duplicates() -> None:
    doc = load_yaml("base: &b {p: 1, q: 2}\nderived:\n  <<: *b\n  q: 3\n")
    assert doc.issues == []
    assert doc.data["derived"] == {"q": 3, "p": 1}
    assert doc.line_of(("derived", "q")) == 4


def test_syntax_error_has_line_and_column() -> None:
    doc = load_yaml("a: 1\nb: c: d\n")
    assert doc.syntax_error
    [issue] = doc.issues
    assert issue.line == 2
    assert "line 2, column 5" in issue.message


def test_empty_document_is_none() -> None:
    doc = load_yaml("# only a comment\n")
    assert doc.data is None
    assert doc.issues == []


def test_unknown_tag_is_an_issue_not_a_crash() -> None:
    doc = load_yaml("a: !custom x\n")
    assert doc.data == {"a": None}
    assert "!custom" in doc.issues[0].message


def test_control_and_bidi_characters_are_stripped_from_echoed_keys() -> None:
    doc = load_yaml('"na\\u202eme": 1\n"na\\u202eme": 2\n')
    assert "'name'" in doc.issues[0].message
