"""Durations need a unit, sizes take KiB/MiB/GiB, signals go by name (SUPERVISOR.md §4.2).

The messages here are the ones the config report shows.
"""

from __future__ import annotations

import signal

import pytest

from supervisor.config.durations import UnitError, parse_duration, parse_signal, parse_size


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("10m", 600.0), ("1h", 3600.0), ("1m30s", 90.0), ("1.5s", 1.5)],
)
def test_durations(raw: str, seconds: float) -> None:
    assert parse_duration(raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", [30, "30", 30.0])
def test_duration_without_unit(raw: object) -> None:
    with pytest.raises(UnitError, match=r"^duration needs a unit \(e\.g\. 30s\)$"):
        parse_duration(raw)


@pytest.mark.parametrize("raw", ["30 seconds", "s", "", True, None, [1], "-5s"])
def test_bad_durations(raw: object) -> None:
    with pytest.raises(UnitError, match="must be a duration"):
        parse_duration(raw)


@pytest.mark.parametrize(
    ("raw", "size"),
    [("512MiB", 512 * 2**20), ("10KiB", 10240), ("1GiB", 2**30), ("100B", 100), (4096, 4096)],
)
def test_sizes(raw: object, size: int) -> None:
    assert parse_size(raw) == size


@pytest.mark.parametrize("raw", ["10MB", "lots", 1.5, None, -1])
def test_bad_sizes(raw: object) -> None:
    with pytest.raises(UnitError):
        parse_size(raw)


@pytest.mark.parametrize("raw", ["TERM", "SIGTERM", "term", "sigterm"])
def test_signals_with_or_without_prefix(raw: str) -> None:
    assert parse_signal(raw) == signal.SIGTERM


@pytest.mark.parametrize("raw", ["NOPE", 15, "", None])
def test_bad_signals(raw: object) -> None:
    with pytest.raises(UnitError):
        parse_signal(raw)
