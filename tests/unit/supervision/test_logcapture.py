"""Line splitting at every byte boundary, the 16 KiB cap, UTF-8 cuts, the ring, rotation."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing

from supervisor.config.model import LogSettings
from supervisor.supervision.logcapture import (
    MAX_LINE,
    LineSplitter,
    LogLine,
    RotatingLogFile,
    WorkerLog,
    strip_control,
)

SAMPLE = "first line\nsecond, with é and 漢字\n\nfourth\r\nlast without newline".encode()


def split_all(chunks: list[bytes], max_line: int = MAX_LINE) -> list[LogLine]:
    s = LineSplitter(max_line)
    out: list[LogLine] = []
    for c in chunks:
        out += s.feed(c)
    return out + s.flush()


EXPECTED = [
    LogLine("first line"),
    LogLine("second, with é and 漢字"),
    LogLine(""),
    LogLine("fourth"),
    LogLine("last without newline"),
]


def test_whole_input_in_one_chunk() -> None:
    assert split_all([SAMPLE]) == EXPECTED


@pytest.mark.parametrize("cut", range(len(SAMPLE) + 1))
def test_every_single_split_point(cut: int) -> None:
    assert split_all([SAMPLE[:cut], SAMPLE[cut:]]) == EXPECTED


@pytest.mark.parametrize("a", range(0, len(SAMPLE) + 1, 3))
def test_every_pair_of_split_points(a: int) -> None:
    for b in range(a, len(SAMPLE) + 1, 2):
        assert split_all([SAMPLE[:a], SAMPLE[a:b], SAMPLE[b:]]) == EXPECTED


def test_byte_by_byte() -> None:
    assert split_all([bytes([b]) for b in SAMPLE]) == EXPECTED


def test_long_line_is_cut_at_the_cap_and_marked() -> None:
    line = b"x" * (100 * 1024)
    out = split_all([line + b"\nnext\n"])
    pieces = out[:-1]
    assert [len(p.text) for p in pieces] == [MAX_LINE] * 6 + [100 * 1024 - 6 * MAX_LINE]
    assert all(p.truncated for p in pieces[:-1])
    assert not pieces[-1].truncated  # the last piece ends at the newline
    assert "".join(p.text for p in pieces) == "x" * (100 * 1024)
    assert out[-1] == LogLine("next")


def test_line_of_exactly_the_cap_is_not_truncated() -> None:
    line = b"y" * MAX_LINE
    for cut in (0, 1, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1):
        data = line + b"\n"
        assert split_all([data[:cut], data[cut:]]) == [LogLine("y" * MAX_LINE)]


def test_cut_never_lands_inside_a_utf8_character() -> None:
    text = "é" * 20  # 2 bytes each
    out = split_all([text.encode() + b"\n"], max_line=7)
    assert all("\ufffd" not in p.text for p in out)
    assert "".join(p.text for p in out) == text


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert split_all([b"bad \xff\xfe bytes\n"]) == [LogLine("bad \ufffd\ufffd bytes")]


def test_strip_control_sequences() -> None:
    assert strip_control("\x1b[31mred\x1b[0m\tok\x07") == "red\tok"


def test_ring_keeps_the_last_lines_and_log_tail_skips_blanks() -> None:
    wl = WorkerLog("w", LogSettings(file=False, to_supervisor_log=False), ring_size=10)
    for i in range(25):
        wl.emit("stdout", f"line {i}")
        wl.emit("stderr", "   ")
    assert [r.line for r in wl.tail(3, "stdout")] == ["line 22", "line 23", "line 24"]
    assert wl.log_tail(2) == ["line 23", "line 24"]
    assert len(wl.ring) == 10


async def test_pump_reads_a_stream_into_whole_lines() -> None:
    wl = WorkerLog("w", LogSettings(file=False, to_supervisor_log=False))
    send, recv = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(wl.pump, recv, "stdout", lambda: 42)
        for piece in (b"hel", b"lo\nwor", b"ld\npartial"):
            await send.send_all(piece)
            await trio.testing.wait_all_tasks_blocked()
        await send.aclose()
    assert [(r.line, r.pid) for r in wl.tail(10)] == [("hello", 42), ("world", 42), ("partial", 42)]


async def test_follower_gets_new_lines_and_a_slow_one_never_blocks() -> None:
    wl = WorkerLog("w", LogSettings(file=False, to_supervisor_log=False))
    with wl.follow() as live:
        for i in range(5000):  # more than the follower queue holds
            wl.emit("stdout", f"{i}")
        got = [live.receive_nowait().line for _ in range(3)]
    assert got == ["0", "1", "2"]


async def test_file_writer_rotates_to_exactly_the_backups(tmp_path: Path) -> None:
    settings = LogSettings(file=True, max_bytes=1024 * 1024, backups=2, to_supervisor_log=False)
    wl = WorkerLog("w", settings, tmp_path)
    line = "z" * 1000
    async with trio.open_nursery() as n:
        n.start_soon(wl.run_writer)
        for _ in range(5 * 1024):  # ~5 MiB
            wl.emit("stdout", line)
            if len(wl.ring) % 256 == 0:
                await trio.lowlevel.checkpoint()
        wl.close()
    check_rotated(tmp_path, line)
    assert wl.dropped >= 0


def check_rotated(directory: Path, line: str) -> None:
    files = sorted(p.name for p in directory.iterdir())
    assert files == ["w.log", "w.log.1", "w.log.2"]
    assert all(p.stat().st_size <= 1024 * 1024 for p in directory.iterdir())
    first = (directory / "w.log").read_text().splitlines()[0]
    assert first.endswith(" out " + line)


def test_rotating_file_reopen_after_move(tmp_path: Path) -> None:
    f = RotatingLogFile(tmp_path / "a.log", 1 << 20, 3)
    f.write([b"one\n"])
    (tmp_path / "a.log").rename(tmp_path / "moved.log")
    f.reopen()
    f.write([b"two\n"])
    f.close()
    assert (tmp_path / "a.log").read_bytes() == b"two\n"
    assert (tmp_path / "moved.log").read_bytes() == b"one\n"


def test_logs_command_reads_older_lines_back_from_the_file(tmp_path: Path) -> None:
    from supervisor.status.commands.logs import _from_file

    path = tmp_path / "w.log"
    path.write_text(
        "2026-01-01T00:00:00.000Z --- --- iii-supervisor: spawned pid 1 ---\n"
        "2026-01-01T00:00:01.000Z out hello world\n"
        "2026-01-01T00:00:02.000Z err oops: \x1b[31mred\x1b[0m\n"
    )
    assert [(r["stream"], r["line"]) for r in _from_file(path, 10, None)] == [
        ("supervisor", "--- iii-supervisor: spawned pid 1 ---"),
        ("stdout", "hello world"),
        ("stderr", "oops: red"),
    ]
    assert [r["line"] for r in _from_file(path, 10, "stdout")] == ["hello world"]


def test_json_log_lines_are_kept_as_records() -> None:
    from supervisor.supervision.logcapture import _structured

    assert _structured('{"event": "ready", "level": "warning", "n": 1}') == {
        "event": "ready",
        "level": "warning",
        "n": 1,
    }
    assert _structured('{"no_event": 1}') is None
    assert _structured("{not json}") is None
    assert _structured("plain text") is None
