"""``trainyard watch DIR --status``: each config of the folder with its state, as a table on stdout."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from trainyard.watch.folder import scan
from trainyard.watch.ledger import Entry, Ledger

WIDTH = 160  # of the table when stdout is not a terminal (a file, a pipe): errors stay readable


@dataclass(frozen=True)
class Row:
    """One config: its file, its state (pending, running, done, failed, unreadable), what to know."""

    file: str
    state: str
    details: str
    when: str


def status_rows(folder: Path) -> list[Row]:
    """The configs now in ``folder``, oldest first, with what the ledger holds for their content."""
    configs, unreadable = scan(folder)
    entries = Ledger(folder).entries()
    latest: dict[str, Entry] = {}
    for entry in sorted(entries.values(), key=lambda entry: entry.started):
        latest[entry.file] = entry
    rows = []
    for config in configs:
        found = entries.get(config.content_hash)
        if found is None:
            before = latest.get(config.name)
            details = f"changed since its last run ({_outcome(before)})" if before else "waits for a watcher"
            rows.append(Row(config.name, "pending", details, ""))
        else:
            rows.append(Row(config.name, found.state, _details(found, config.name), _when(found)))
    rows += [Row(name, "unreadable", why, "") for name, why in sorted(unreadable.items())]
    return rows


def print_status(folder: Path) -> int:
    """Print the table; 0."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"trainyard watch {folder}", title_justify="left")
    for column in ("file", "state", "run / error", "since"):
        table.add_column(column, overflow="fold")
    for row in status_rows(folder):
        table.add_row(row.file, row.state, row.details, row.when)
    if not table.row_count:
        table.caption = "no *.yaml or *.yml file in the folder"
    Console(highlight=False, width=None if sys.stdout.isatty() else WIDTH).print(table)
    return 0


def _details(entry: Entry, file: str) -> str:
    same = f" (same content as {entry.file})" if entry.file != file else ""
    if entry.state == "running":
        job = f"pid {_pid(entry.job)}, " if entry.job else ""
        if not entry.alive:
            return (
                f"{job}its watcher (pid {_pid(entry.watcher)}) is gone: the next watcher takes it over{same}"
            )
        return f"{job}watcher pid {_pid(entry.watcher)}{same}"
    return _outcome(entry) + same


def _outcome(entry: Entry) -> str:
    if entry.state == "done":
        return f"run {entry.run_id}" if entry.run_id else "done (run not found in MLflow)"
    if entry.state == "failed":
        run = f" (run {entry.run_id})" if entry.run_id else ""
        return f"{entry.error}{run}"
    return entry.state


def _when(entry: Entry) -> str:
    moment = entry.finished if entry.finished is not None else entry.started
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


def _pid(token: str | None) -> str:
    parts = (token or "").split(":")
    return parts[1] if len(parts) == 3 else str(token)
