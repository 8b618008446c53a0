"""The README's guide markers describe a runnable guide, and outputs are matched as documented."""

from __future__ import annotations

import pytest

from tests.integration.guide import readme


def kinds(steps: tuple[readme.Step, ...]) -> list[str]:
    return [s.kind for s in steps]


def test_readme_guide_has_both_parts_in_runnable_order() -> None:
    guide = readme.load()
    for part in (guide.python, guide.node):
        background = [s for s in part if s.kind == "background"]
        assert [s.text.strip() for s in background] == ["iii-supervisor up"]
        assert part[-1].kind == "run" and part[-1].text.strip() == "iii-supervisor shutdown"
        files = [s.arg for s in part if s.kind == "file"]
        assert "config.yaml" in files and all(files)
        for before, step in zip(part, part[1:], strict=False):
            if step.kind == "output":
                assert before.kind == "run", f"README.md:{step.line}: output after {before.kind}"
    python_text = "".join(s.text for s in guide.python)
    for needed in ("curl", "iii-supervisor status", "iii-supervisor logs", "state::set"):
        assert needed in python_text


def test_a_marker_without_its_block_is_an_error() -> None:
    text = "## Your first function\n\n<!-- guide:run -->\nno block here\n"
    with pytest.raises(readme.GuideError, match="not followed by a code block"):
        readme.parse(text)


def test_a_guide_without_an_end_is_an_error() -> None:
    text = "## Your first function\n\n<!-- guide:run -->\n```sh\nls\n```\n"
    with pytest.raises(readme.GuideError, match="no <!-- guide:end -->"):
        readme.parse(text)


def test_parse_splits_python_and_node_parts() -> None:
    text = (
        "intro\n## Your first function\n<!-- guide:file a.py -->\n```python\nx = 1\n```\n"
        "<!-- guide:node -->\n<!-- guide:run eventually -->\n```sh\nnode -v\n```\n"
        "<!-- guide:end -->\n<!-- guide:run -->\n```sh\nignored\n```\n"
    )
    guide = readme.parse(text)
    assert guide.python == (readme.Step("file", "x = 1\n", "a.py", "python", 3),)
    assert guide.node == (readme.Step("run", "node -v\n", "eventually", "sh", 8),)


def output(text: str, lang: str = "text") -> readme.Step:
    return readme.Step("output", text, None, lang)


def test_ellipsis_and_whitespace_in_expected_lines() -> None:
    expected = output("hello                READY     pid …, uptime …, restarts 1\n")
    assert readme.matches(expected, "hello   READY  pid 42, uptime 0:00:01, restarts 1\n")
    assert not readme.matches(expected, "hello   READY  pid 42, uptime 0:00:01, restarts 0\n")
    assert not readme.matches(expected, "hello READY pid 1, uptime 0, restarts 1\nextra line\n")


def test_json_outputs_compare_as_values() -> None:
    expected = output('{"hello":"world","visits":1}\n', "json")
    assert readme.matches(expected, '{"visits": 1, "hello": "world"}')
    assert not readme.matches(expected, '{"hello":"world","visits":2}')
    assert not readme.matches(expected, "not json")
    loose = output('{"error":{"code":"invocation_stopped",…}}\n', "json")
    assert readme.matches(loose, '{"error":{"code":"invocation_stopped","message":"x"}}')
    assert not readme.matches(loose, '{"error":{"code":"timeout","message":"x"}}')
