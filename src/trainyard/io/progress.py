"""Live progress of work done in chunks of rows: a bar on a terminal, one log line per chunk elsewhere."""

from __future__ import annotations

import time
from typing import Any

from trainyard.io.console import console
from trainyard.io.logging import get_logger


class RowProgress:
    """Rows done, their rate, and the time left when ``total`` (an estimate) is known.

    On a terminal a rich bar (gone when done: the step's log line stays); elsewhere (CI, files,
    services) a log line per chunk: ``chunk 3: 250,000 rows (1,200,000 rows/s)``.
    """

    def __init__(self, total: int | None, what: str = "rows") -> None:
        self.total = total
        self.what = what
        self.rows = 0
        self.chunks = 0
        self._start = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> RowProgress:
        self._start = time.perf_counter()
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn(self.what), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                TimeRemainingColumn(), console=console, transient=True,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        elapsed = time.perf_counter() - self._start
        return self.rows / elapsed if elapsed > 0 else 0.0

    def advance(self, rows: int) -> None:
        """Count a chunk of ``rows`` done: move the bar, or log a line."""
        self.rows += rows
        self.chunks += 1
        if self._progress is not None:
            total = max(self.total, self.rows) if self.total is not None else None  # an estimate
            self._progress.update(
                self._task, completed=self.rows, total=total, description=f"{self.rate:,.0f} {self.what}/s"
            )
        else:
            get_logger().info(
                "chunk %d: %s %s (%s %s/s)",
                self.chunks,
                f"{self.rows:,}",
                self.what,
                f"{self.rate:,.0f}",
                self.what,
            )
