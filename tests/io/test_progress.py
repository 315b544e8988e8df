"""Progress of chunked work: a bar on a terminal (rows, rate, total when known), a line per chunk elsewhere."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from trainyard.io import progress as progress_module
from trainyard.io.progress import RowProgress


def test_a_terminal_shows_a_bar_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    monkeypatch.setattr(progress_module, "console", console)
    with RowProgress(total=1_000) as progress:
        progress._progress.live.transient = False  # keep the last frame on screen, to read it
        progress.advance(400)
        progress.advance(600)
    assert progress.rows == 1_000 and progress.chunks == 2
    shown = screen.getvalue()
    assert "1000/1000" in shown and "rows/s" in shown


def test_elsewhere_each_chunk_is_a_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []

    class Logger:
        def info(self, message: str, *args: object) -> None:
            lines.append(message % args)

    monkeypatch.setattr(progress_module, "get_logger", Logger)
    with RowProgress(total=None) as progress:
        progress.advance(100_000)
        progress.advance(5)
    assert len(lines) == 2
    assert lines[0].startswith("chunk 1: 100,000 rows (") and lines[1].startswith("chunk 2: 100,005 rows (")
    assert all(line.endswith(" rows/s)") for line in lines) and progress.rate > 0
