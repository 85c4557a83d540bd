"""The daemon's log lines: timestamps unless the stream is the systemd journal; JSON lines
that parse."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from trioraft.logs import ROOT, NodeLogger, setup_logging


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[TextIO]:
    with (tmp_path / "log").open("w+", encoding="utf-8") as stream:
        yield stream
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


def one_line(stream: TextIO) -> str:
    NodeLogger("n1").info("became leader", term=4)
    stream.flush()
    stream.seek(0)
    [line] = stream.read().splitlines()
    return line


def journal_stream_of(stream: TextIO) -> str:
    st = os.fstat(stream.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def test_a_line_starts_with_its_utc_time(log_file: TextIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging("n1", stream=log_file)
    line = one_line(log_file)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO n1 became leader term=4", line
    )


def test_no_timestamp_when_the_stream_is_the_journal(
    log_file: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(log_file))
    setup_logging("n1", stream=log_file)
    assert one_line(log_file) == "INFO n1 became leader term=4"


def test_a_journal_stream_of_another_file_keeps_the_timestamp(
    log_file: TextIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd's stderr was redirected elsewhere (to a file, say): stamp the lines."""
    with (tmp_path / "other").open("w") as other:
        monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(other))
    setup_logging("n1", stream=log_file)
    assert one_line(log_file).endswith("Z INFO n1 became leader term=4")


# ---- JSON lines -----------------------------------------------------------------------


def json_lines(stream: TextIO) -> list[dict[str, Any]]:
    stream.flush()
    stream.seek(0)
    return [json.loads(line) for line in stream.read().splitlines()]


def test_a_json_line_is_one_object_with_typed_fields(log_file: TextIO) -> None:
    setup_logging("n1", stream=log_file, fmt="json")
    NodeLogger("n2").info(
        "became leader", term=4, members={"n3", "n1"}, key=b"k\x00\n", ok=True, note="a b\n"
    )
    [line] = json_lines(log_file)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.pop("time"))
    assert line == {
        "level": "INFO",
        "node": "n2",
        "event": "became leader",
        "fields": {
            "term": 4,
            "members": ["n1", "n3"],
            "key": "k\\x00\\x0a",
            "ok": True,
            "note": "a b\n",
        },
    }


def test_a_json_line_keeps_its_time_in_the_journal_and_carries_an_error(
    log_file: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(log_file))
    setup_logging("n1", stream=log_file, fmt="json")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        NodeLogger("n1").exception("stopped by an error", ratio=float("nan"))
    [line] = json_lines(log_file)
    assert "time" in line
    fields = line["fields"]
    assert fields["ratio"] == "nan"
    assert fields["error"] == "ValueError: bad\nthing"
    assert fields["traceback"].startswith("Traceback")
    log_file.seek(0)
    assert len(log_file.read().splitlines()) == 1
