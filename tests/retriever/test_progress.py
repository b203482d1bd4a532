"""Progress: a bar on a terminal, periodic plain lines elsewhere (logs, pipes, CI)."""

from __future__ import annotations

import io
import time

from e5rag.retriever.progress import LineProgress, progress, progress_interval


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_not_a_bar_when_the_stream_is_not_a_terminal(monkeypatch):
    monkeypatch.setenv("E5RAG_PROGRESS_SECONDS", "0")
    stream = io.StringIO()
    with progress(5, "encode", "texts", stream=stream, status=lambda: "ok") as bar:
        assert isinstance(bar, LineProgress)
        for _ in range(5):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [f"encode: {i}/5 texts ({i * 20}%)" for i in range(1, 6)]
    assert all(line.endswith(", ok") for line in lines) and "\r" not in stream.getvalue()


def test_lines_come_on_a_timer_while_nothing_advances():
    stream = io.StringIO()
    with LineProgress(4, "synth", "examples", every_s=0.05, stream=stream, status=lambda: "waiting") as bar:
        time.sleep(0.5)  # one long step: no update at all
        assert len(stream.getvalue().splitlines()) >= 2
        bar.update(4)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("synth: 0/4 examples (0%)") and lines[0].endswith(", waiting")
    assert lines[-1].startswith("synth: 4/4 examples (100%)")  # the closing line


def test_interval_keeps_short_runs_quiet(monkeypatch):
    monkeypatch.setenv("E5RAG_PROGRESS_SECONDS", "3600")
    stream = io.StringIO()
    with progress(100, "encode", "texts", stream=stream) as bar:
        bar.update(100)
    assert stream.getvalue() == ""
    monkeypatch.setenv("E5RAG_PROGRESS_SECONDS", "not a number")
    assert progress_interval() == 30.0


def test_a_terminal_gets_a_bar_and_disabled_prints_nothing():
    tty = _Tty()
    with progress(3, "encode", "texts", stream=tty) as bar:
        assert not isinstance(bar, LineProgress)
        bar.update(3)
    assert "3/3" in tty.getvalue()
    quiet = io.StringIO()
    with progress(3, "encode", "texts", stream=quiet, enabled=False) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""
