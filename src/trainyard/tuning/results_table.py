"""A study's results table (``trials.csv``): one row per trial, its columns named after the metrics.

Built from the trials directly rather than with ``study.trials_dataframe()``: scores are named after
the metrics, fold scores and fit time get a column each, Optuna's system attrs stay out, and nothing
is left as a Python repr that only Python can read back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trainyard.records import ERROR_ATTR, FOLDS_ATTR, WORKER_ATTR

if TYPE_CHECKING:
    import pandas as pd
    from optuna.trial import FrozenTrial

_OWN_ATTRS = (FOLDS_ATTR, ERROR_ATTR, WORKER_ATTR)


def results_table(trials: Iterable[FrozenTrial], metric_names: Sequence[str]) -> pd.DataFrame:
    """One row per trial, by trial number; columns in this order:

    ``trial``, ``state``, ``<metric>`` (the objective value, one per metric, in objective order), then
    per metric ``<metric>_std`` and ``<metric>_fold_<i>`` (from the ``folds`` user attr; ``i`` from 0,
    as the child runs' steps), ``fit_time_s``, ``param_<name>``, ``start``, ``end`` (ISO 8601, UTC),
    ``duration_s``, ``worker``, ``error``, ``attr_<name>`` (other user attrs). Missing values are empty.
    """
    import numpy as np
    import pandas as pd

    rows = sorted(trials, key=lambda t: t.number)
    n, width = len(rows), len(metric_names)
    nothing = (None,) * width
    values: list[Sequence[float | None]] = []
    scores: dict[str, list[Sequence[float]]] = {name: [] for name in metric_names}
    fit_times: list[float | None] = []
    params: dict[str, list[Any]] = {}
    attrs: dict[str, list[Any]] = {}
    starts: list[float | None] = []
    ends: list[float | None] = []
    workers: list[Any] = []
    errors: list[Any] = []
    for row, trial in enumerate(rows):
        # a study resumed with other metrics can hold trials with another number of values
        values.append(nothing if trial.values is None else (*trial.values, *nothing)[:width])
        user_attrs = trial.user_attrs
        recorded = user_attrs.get(FOLDS_ATTR)
        if not isinstance(recorded, dict):
            recorded = {}
        recorded_scores = recorded.get("scores") or {}
        for name, column in scores.items():
            column.append(recorded_scores.get(name) or ())
        fit_times.append(recorded.get("fit_time"))
        for name, value in trial.params.items():
            _cell(params, name, n)[row] = value
        starts.append(_seconds(trial.datetime_start))
        ends.append(_seconds(trial.datetime_complete))
        workers.append(user_attrs.get(WORKER_ATTR))
        errors.append(user_attrs.get(ERROR_ATTR))
        for name, value in user_attrs.items():
            if name not in _OWN_ATTRS:
                _cell(attrs, name, n)[row] = json.dumps(value) if isinstance(value, dict | list) else value

    columns: dict[str, Any] = {
        "trial": np.array([t.number for t in rows], dtype=np.int64),
        "state": [t.state.name for t in rows],
    }
    objective = np.array(values, dtype=float).reshape(n, width)  # None becomes NaN
    for index, name in enumerate(metric_names):
        columns[name] = objective[:, index]
    for name, lists in scores.items():
        folds = _padded(lists)
        columns[f"{name}_std"] = _std(folds)
        for fold in range(folds.shape[1]):
            columns[f"{name}_fold_{fold}"] = folds[:, fold]
    columns["fit_time_s"] = np.array(fit_times, dtype=float)
    columns.update({f"param_{name}": _typed(column) for name, column in params.items()})
    start, end = np.array(starts, dtype=float), np.array(ends, dtype=float)
    columns.update(
        start=_iso(start), end=_iso(end), duration_s=np.round(end - start, 6), worker=workers, error=errors
    )
    columns.update({f"attr_{name}": _typed(column) for name, column in attrs.items()})
    return pd.DataFrame(columns)


def _cell(columns: dict[str, list[Any]], name: str, n: int) -> list[Any]:
    """The column ``name`` (``n`` empty cells when new)."""
    column = columns.get(name)
    if column is None:
        column = columns[name] = [None] * n
    return column


def _padded(lists: list[Sequence[float]]) -> Any:
    """Per-trial fold scores as one array, a column per fold, NaN past a trial's last fold."""
    import numpy as np

    folds = max(map(len, lists), default=0)
    return np.array([[*scores, *(None,) * (folds - len(scores))] for scores in lists], dtype=float).reshape(
        len(lists), folds
    )


def _std(folds: Any) -> Any:
    """Each row's standard deviation (ddof 0, as the child runs' ``<metric>_std``); NaN without folds."""
    import numpy as np

    std = np.full(folds.shape[0], np.nan)
    scored = ~np.isnan(folds).all(axis=1) if folds.shape[1] else np.zeros(folds.shape[0], dtype=bool)
    if scored.any():
        std[scored] = np.nanstd(folds[scored], axis=1)
    return std


def _typed(column: list[Any]) -> Any:
    """Values as the trials got them: integers stay integers beside empty cells, mixed types stay mixed."""
    import pandas as pd

    kinds = {type(value) for value in column if value is not None}
    if len(kinds) > 1:
        return pd.array(column, dtype=object)  # e.g. choice(1, 0.5, auto): 1 stays 1, not 1.0
    if kinds == {int}:
        return pd.array(column, dtype="Int64")
    if kinds == {bool}:
        return pd.array(column, dtype="boolean")
    return column


def _seconds(moment: datetime | None) -> float | None:
    """Seconds since the epoch of Optuna's local, naive time (as the child runs' start and end)."""
    return moment.timestamp() if moment is not None else None


def _iso(seconds: Any) -> list[str | None]:
    """ISO 8601 in UTC to the millisecond (``2025-06-01T09:30:00.123Z``); None where NaN."""
    import numpy as np

    known = ~np.isnan(seconds)
    text = np.datetime_as_string(
        (np.where(known, seconds, 0) * 1000).astype("int64").astype("datetime64[ms]"),
        unit="ms",
        timezone="UTC",
    )
    return [str(value) if ok else None for value, ok in zip(text, known, strict=True)]
