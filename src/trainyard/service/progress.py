"""A job's progress from what its process reports: the step, steps done, trials and the best score.

The service (from the child's messages) and the child itself (for the end it records) keep it the
same way, with ``advance``.
"""

from __future__ import annotations

from typing import Any


def advance(progress: dict[str, Any], message: tuple[Any, ...]) -> str | None:
    """Update ``progress`` with one of the child's messages; the title of a step that started (a
    transition to record), else None. ``("step", title, state, seconds)``: ``step`` and
    ``steps_done``; ``("trial", done, budget, best)``: ``trials_done``, ``trials_budget``, ``best``
    and ``percent``; other messages leave it as it is."""
    kind = message[0]
    if kind == "step":
        _, title, state, _seconds = message
        if state == "started":
            progress["step"] = title
            return str(title)
        if state == "ended":
            progress["steps_done"] = progress.get("steps_done", 0) + 1
    elif kind == "trial":
        _, done, budget, best = message
        progress.update(trials_done=done, trials_budget=budget, best=best)
        if budget:
            progress["percent"] = round(min(100.0, 100.0 * done / budget), 1)
    return None


def completed(progress: dict[str, Any]) -> dict[str, Any]:
    """The progress of a job that completed: all done, no step running."""
    return {**progress, "percent": 100.0, "step": None}
