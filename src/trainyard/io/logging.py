"""The logger service: one ``trainyard`` logger to the console (rich) and optionally to a file."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TextIO

from pydantic import Field

from trainyard.core.component import Component

LOGGER_NAME = "trainyard"


class LoggerService(Component):
    """Where and how much the job logs."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severe level shown."
    )
    format: str = Field(
        "%(asctime)s %(levelname)s %(message)s",
        description="Format of file records (logging syntax).",
    )
    folder: str | None = Field(None, description="Folder for the log file; unset logs to the console only.")
    file: str = Field("trainyard.log", description="Log file name inside `folder`.")

    def start(self) -> logging.Logger:
        """Configure and return the logger (idempotent: previous handlers are replaced)."""
        from rich.logging import RichHandler

        from trainyard.io.console import console

        logger = logging.getLogger(LOGGER_NAME)
        self.stop()
        logger.setLevel(self.level)
        logger.propagate = False
        handler: logging.Handler
        if console.is_terminal:
            handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:  # a file or a pipe: lines as they are, not padded or wrapped to a width nobody sees
            handler = StderrHandler()
            handler.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
        logger.addHandler(handler)
        if self.folder:
            Path(self.folder).mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(Path(self.folder) / self.file, encoding="utf-8")
            file_handler.setFormatter(logging.Formatter(self.format))
            logger.addHandler(file_handler)
        global _shown_before
        _shown_before = warnings.showwarning  # stop() has put back any earlier job's
        warnings.showwarning = _log_warning
        return logger

    def stop(self) -> None:
        """Flush and detach every handler."""
        logger = logging.getLogger(LOGGER_NAME)
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)
        global _shown_before
        if _shown_before is not None:  # what showed warnings before the job: Python's, pytest's...
            warnings.showwarning, _shown_before = _shown_before, None


_shown_before: Callable[..., None] | None = None  # set while a job's logger shows the warnings


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Show a Python warning (scikit-learn's ConvergenceWarning, say) as a line of the job's log.

    Python's own format prints the library's file path and source line; the log names the warning
    and where it came from, on one line (a message of several lines is joined), and the log file
    keeps it too. Python's filters still decide which warnings are shown (by default, once per place
    in the code), and they are records at the WARNING level: ``logger.level: ERROR`` hides them.
    """
    if file is not None:  # written to a stream on purpose: leave it to Python
        file.write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    where = "/".join(Path(filename).parts[-2:])
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    get_logger().warning("%s (%s:%d): %s", category.__name__, where, lineno, text)


class StderrHandler(logging.Handler):
    """Plain log lines to whatever ``sys.stderr`` is when a record comes (a test may swap it).

    Used when stderr is not a terminal: 0.02 ms a line against 0.6 ms through rich, which lays out
    each record as a table padded to 80 columns; a tuning job logs one line per trial.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def get_logger() -> logging.Logger:
    """The ``trainyard`` logger."""
    return logging.getLogger(LOGGER_NAME)
