"""The study's plots: what each figure shows, on the spaces a tuning job can search."""

from __future__ import annotations

import io
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from tests.conftest import ends_within
from trainyard.runtime.processes import usable_cores
from trainyard.tuning import plots
from trainyard.tuning.plots import (
    Objective,
    _Axis,
    _can_fork,
    figures,
    optimization_history,
    parallel_coordinate,
    save_figures,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)


def objective(trial: optuna.Trial) -> float:
    depth = trial.suggest_categorical("max_depth", [None, 3, 6])
    alpha = trial.suggest_float("alpha", 1e-4, 1.0, log=True)
    if trial.suggest_categorical("kind", ["a", "b"]) == "b":  # a conditional parameter
        trial.suggest_int("leaves", 2, 64)
    return (depth or 10) + math.log10(alpha)


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(objective, n_trials=30)
    study.enqueue_trial({"max_depth": 3, "alpha": 1e-4, "kind": "a"})  # then a trial that fails
    study.optimize(lambda trial: 1 / 0, n_trials=1, catch=(ZeroDivisionError,))
    return study


def test_the_three_figures_are_drawn_and_saved_as_png(study: optuna.Study) -> None:
    makers = figures(study, "rmse")
    # the importances last: a job computing them for its writer has the time of the other two
    assert list(makers) == ["optimization_history.png", "parallel_coordinate.png", "param_importances.png"]
    for make in makers.values():
        buffer = io.BytesIO()
        make().savefig(buffer, format="png")
        assert buffer.getvalue().startswith(b"\x89PNG")


def test_the_history_shows_each_completed_trial_and_the_best_so_far(study: optuna.Study) -> None:
    figure = optimization_history(Objective.of(study, "rmse"))
    axes = figure.axes[0]
    points = axes.collections[0].get_offsets()
    assert len(points) == 30, "the failed trial has no value"
    best = axes.lines[0].get_ydata()
    assert list(best) == list(np.minimum.accumulate(points[:, 1])), "minimized: the best is the lowest so far"
    assert axes.get_ylabel() == "rmse"


def test_the_history_of_a_maximized_study_keeps_the_highest() -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=10)
    best = optimization_history(Objective.of(study, "r2")).axes[0].lines[0].get_ydata()
    assert best[-1] == study.best_value and list(best) == sorted(best)


def test_the_parallel_coordinates_draw_one_line_per_completed_trial(study: optuna.Study) -> None:
    figure = parallel_coordinate(Objective.of(study, "rmse"))
    axes = figure.axes[0]
    lines = next(c for c in axes.collections if isinstance(c, LineCollection))
    segments = lines.get_segments()
    assert len(segments) == 30
    assert [t.get_text() for t in axes.get_xticklabels()] == ["alpha", "kind", "leaves", "max_depth", "rmse"]
    assert all(0.0 <= y <= 1.0 for segment in segments for _, y in segment)
    with_leaves = sum(1 for t in Objective.of(study, "rmse").trials if "leaves" in t.params)
    assert sum(1 for s in segments if 2 in s[:, 0]) == with_leaves, (
        "a trial without a parameter skips its axis"
    )
    best_last = segments[-1][-1][1]
    assert best_last == 0.0, "the best (lowest) trial is drawn last, on top"


def test_an_axis_places_categories_none_included_and_log_ranges() -> None:
    categories = _Axis("max_depth", 0.0, 1.0, False, [None, 3, 6])
    assert [categories.position(v) for v in (None, 3, 6)] == [0.0, 0.5, 1.0]
    assert [label for _, label in categories.ticks()] == ["None", "3", "6"]
    log = _Axis("alpha", 1e-4, 1.0, True, None)
    assert log.position(1e-2) == pytest.approx(0.5)
    assert log.ticks() == [(0.0, "0.0001"), (pytest.approx(0.5), "0.01"), (1.0, "1")]
    assert _Axis("x", 2.0, 2.0, False, None).position(2.0) == 0.5, "one value: the middle"


def test_a_multi_objective_study_is_plotted_on_its_first_objective() -> None:
    study = optuna.create_study(
        directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=2)
    )
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=12)
    objective = Objective.of(study, "rmse")
    assert objective.values() == [t.values[0] for t in study.trials] and not objective.maximize
    for make in figures(study, "rmse").values():
        make()


def test_a_study_without_a_completed_trial_says_so() -> None:
    study = optuna.create_study()
    study.optimize(lambda trial: 1 / 0, n_trials=1, catch=(ZeroDivisionError,))
    with pytest.raises(ValueError, match="no trial completed"):
        parallel_coordinate(Objective.of(study, "rmse"))


def test_no_label_falls_outside_its_figure() -> None:
    """Margins come from the labels: long parameter names and wide values stay inside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def wide(trial: optuna.Trial) -> float:
        trial.suggest_float("regressor__estimator__learning_rate", 1e-5, 1.0, log=True)
        trial.suggest_categorical("preprocessing__scaler", ["standard", "robust-with-a-long-name"])
        return 123456.789 * trial.suggest_float("z", 0, 1)

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    study.optimize(wide, n_trials=20)
    for name, make in figures(study, "mean_absolute_percentage_error").items():
        figure = make()
        renderer = FigureCanvasAgg(figure).get_renderer()
        figure.draw(renderer)
        drawn = figure.get_tightbbox(renderer)  # inches: everything drawn, labels included
        width, height = figure.get_size_inches()
        assert drawn.x0 >= 0 and drawn.y0 >= 0 and drawn.x1 <= width and drawn.y1 <= height, (name, drawn)


def test_importances_without_parameters_say_so() -> None:
    from trainyard.tuning.plots import param_importances

    study = optuna.create_study()
    study.optimize(lambda trial: 1.0, n_trials=2)
    with pytest.raises(ValueError, match="no completed trial has parameters to rank"):
        param_importances({}, Objective.of(study, "rmse"))


def test_an_infinite_value_is_left_out_of_the_figures() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    study.enqueue_trial({"x": 0.5})
    study.optimize(lambda t: float("inf") * t.suggest_float("x", 0, 1), n_trials=1)
    assert [t.state.name for t in study.trials].count("COMPLETE") == 6, "Optuna keeps an inf value"
    objective = Objective.of(study, "rmse")
    assert len(objective.trials) == 5 and all(math.isfinite(v) for v in objective.values())
    segments = next(
        c for c in parallel_coordinate(objective).axes[0].collections if isinstance(c, LineCollection)
    )
    assert sorted(s[-1][1] for s in segments.get_segments())[-1] == 1.0, "the values still span the axis"


def test_zero_and_false_are_different_choices() -> None:
    axis = _Axis("flag", 0.0, 1.0, False, [0, False, 1])
    assert [axis.position(v) for v in (0, False, 1)] == [0.0, 0.5, 1.0]


def test_the_parallel_coordinates_show_at_most_twenty_parameters() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=6))
    study.optimize(lambda t: sum(t.suggest_float(f"p{i:02d}", 0, 1) for i in range(30)), n_trials=4)
    axes = parallel_coordinate(Objective.of(study, "rmse")).axes[0]
    assert len(axes.get_xticklabels()) == 21  # 20 parameters and the metric
    assert axes.get_title() == "Parallel coordinates (the first 20 of 30 parameters)"


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "one process"])
def test_the_figures_are_saved_in_the_folder_forked_or_not(
    study: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    monkeypatch.setattr(plots, "_can_fork", lambda: fork)
    makers = figures(study, "rmse")
    assert save_figures(makers, tmp_path) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(makers)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in tmp_path.iterdir())


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forked path, whatever this machine's cores (skipped where there is no fork)."""
    if not hasattr(os, "fork"):
        pytest.skip("the forked path needs os.fork")
    monkeypatch.setattr(plots, "_can_fork", lambda: True)


def test_a_figure_that_fails_reports_its_error_whichever_process_draws_it(
    study: optuna.Study, tmp_path: Path, forking: None
) -> None:

    def fails() -> Figure:
        raise ValueError("no completed trial")

    makers = {"drawn_by_a_child.png": fails, "fine.png": figures(study, "rmse")["optimization_history.png"]}
    makers["drawn_here.png"] = fails  # the last one: drawn by this process
    assert save_figures(makers, tmp_path) == {
        "drawn_by_a_child.png": "no completed trial",
        "drawn_here.png": "no completed trial",
    }
    assert (tmp_path / "fine.png").exists() and not (tmp_path / "drawn_here.png").exists()


def test_a_drawing_process_that_dies_is_reported(study: optuna.Study, tmp_path: Path, forking: None) -> None:
    makers = {"killed.png": lambda: os.kill(os.getpid(), signal.SIGKILL), "last.png": lambda: Figure()}
    errors = save_figures(makers, tmp_path)  # type: ignore[arg-type]
    assert errors == {"killed.png": f"its drawing process ended (signal {signal.SIGKILL.value})"}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        # pinned to one core: no second core to draw on
        ("os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})", ["1", "False"]),
        # SIGCHLD ignored: the children would be reaped at once, and could not be waited for
        ("signal.signal(signal.SIGCHLD, signal.SIG_IGN)", [str(usable_cores()), "False"]),
    ],
    ids=["pinned to one core", "SIGCHLD ignored"],
)
def test_a_process_that_cannot_use_forks_draws_every_figure_itself(setup: str, expected: list[str]) -> None:
    code = (
        f"import os, signal; {setup}; "
        "from trainyard.runtime.processes import usable_cores; from trainyard.tuning.plots import _can_fork; "
        "print(usable_cores(), _can_fork())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == expected
    assert _can_fork() == (usable_cores() > 1), "forks are used here, unless one core is all there is"


def test_figures_are_drawn_here_when_no_process_can_be_forked(
    study: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(plots, "_can_fork", lambda: True)
    monkeypatch.setattr(os, "fork", no_fork)
    makers = figures(study, "rmse")
    assert save_figures(makers, tmp_path) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(makers)


def test_a_plot_that_cannot_be_uploaded_is_skipped_not_the_study(
    study: optuna.Study, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from trainyard.io.logging import LOGGER_NAME
    from trainyard.tuning.trials import _log_plots

    class FlakyStore:
        def __init__(self) -> None:
            self.logged: list[str] = []

        def log_artifact(self, run_id: str, path: str, folder: str) -> None:
            if path.endswith("parallel_coordinate.png"):
                raise OSError("artifact store: 503 Service Unavailable")
            self.logged.append(f"{folder}/{Path(path).name}")

    monkeypatch.setattr(logging.getLogger(LOGGER_NAME), "propagate", True)
    store = FlakyStore()
    _log_plots(store, "run", study, ["rmse"], None)  # type: ignore[arg-type]
    assert store.logged == ["plots/optimization_history.png", "plots/param_importances.png"]
    assert "plot parallel_coordinate.png not logged: OSError: artifact store: 503" in caplog.text


def test_a_cancellation_while_drawing_leaves_no_child_behind(
    study: optuna.Study, tmp_path: Path, forking: None
) -> None:

    def slow() -> Figure:
        (tmp_path / f"child-{os.getpid()}").write_text("")
        time.sleep(30)
        return Figure()

    def cancelled() -> Figure:
        while len(list(tmp_path.glob("child-*"))) < 2:
            time.sleep(0.01)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_figures({"slow.png": slow, "also_slow.png": slow, "here.png": cancelled}, tmp_path)
    for marker in tmp_path.glob("child-*"):  # each child was killed and reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(int(marker.name.removeprefix("child-")), os.WNOHANG)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the forked path needs os.fork")
def test_a_drawing_child_ignores_the_signals_meant_for_its_parent(tmp_path: Path) -> None:
    # A job's Ctrl-C reaches its whole process group: the child must go on drawing, not run the
    # job's handlers; it dies with its parent instead (Linux).
    code = f"""
import os, signal, sys, time
from pathlib import Path
from matplotlib.figure import Figure
from trainyard.tuning import plots
from trainyard.runtime.processes import usable_cores
plots._can_fork = lambda: True
folder = Path({str(tmp_path)!r})
def handler(signum, frame):
    (folder / f"handled-{{os.getpid()}}").write_text("")
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, handler)
def slow():
    (folder / "child-ready.tmp").write_text(str(os.getpid()))
    (folder / "child-ready.tmp").rename(folder / "child-ready")  # seen whole or not at all
    time.sleep(1.0)
    return Figure()
def last():
    while not (folder / "child-ready").exists():
        time.sleep(0.01)
    os.kill(int((folder / "child-ready").read_text()), signal.SIGTERM)
    return Figure()
print(plots.save_figures({{"slow.png": slow, "last.png": last}}, folder))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "{}", done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["child-ready", "last.png", "slow.png"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_drawing_children_die_with_their_parent(tmp_path: Path) -> None:
    code = f"""
import os, time
from pathlib import Path
from trainyard.tuning import plots
from trainyard.runtime.processes import usable_cores
plots._can_fork = lambda: True
folder = Path({str(tmp_path)!r})
def slow():
    (folder / f"child-{{os.getpid()}}").write_text("")
    time.sleep(60)
def last():
    while not list(folder.glob("child-*")):
        time.sleep(0.01)
    os._exit(0)  # the parent dies without waiting for its child
plots.save_figures({{"slow.png": slow, "last.png": last}}, folder)
"""
    subprocess.run([sys.executable, "-c", code], timeout=60, check=True)
    (marker,) = tmp_path.glob("child-*")
    child = int(marker.name.removeprefix("child-"))
    assert ends_within(child)
