"""Native thread pools: the rule, what the fits of trials and training jobs really run with, the override."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from threadpoolctl import threadpool_info

from tests.conftest import CONFS
from tests.jobs.test_tuning import (
    another_live_worker,
    runs_of,
    study_of,
    study_with_a_running_trial_of,
    tuning,
)
from trainyard.cli import main
from trainyard.config import load_settings
from trainyard.records import worker_token
from trainyard.runtime.processes import usable_cores
from trainyard.runtime.threads import (
    AUTO,
    REMEMBER_SECONDS,
    SMALL_FIT_CELLS,
    NativeThreads,
    choose,
    share_cores_among_jobs,
    threads_per_fit,
)
from trainyard.tuning.studies import running_on_this_host

HGB = "job.model={KIND: sklearn, estimator: HistGradientBoostingRegressor, params: {max_iter: 10, random_state: 0}}"
SEARCHER = "{KIND: random, seed: 0, n_trials: 4, space: {learning_rate: 'tag(log, interval(0.05, 0.3))'}}"


def pools() -> dict[str, int]:
    """The size of this thread's pools, by user API (the smallest where a library is loaded twice)."""
    found: dict[str, int] = {}
    for library in threadpool_info():
        found[library["user_api"]] = min(library["num_threads"], found.get(library["user_api"], 1 << 30))
    return found


def needs_pools_of_two_threads() -> None:
    """Auto never raises a pool the environment made smaller (OMP_NUM_THREADS=1): nothing to see then."""
    if min(pools().values()) < 2:
        pytest.skip("the environment keeps the native pools at 1 thread")


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job sees 2 usable cores, whatever the machine has."""
    monkeypatch.setattr("trainyard.runtime.processes.usable_cores", lambda: 2)


@pytest.fixture
def tables_not_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example tables count as large: the cores rule decides alone."""
    monkeypatch.setattr("trainyard.runtime.threads.SMALL_FIT_CELLS", 0)


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, int]]]]:
    """Every HistGradientBoostingRegressor fit of the test: its thread and the pools it ran with."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    seen: list[tuple[str, dict[str, int]]] = []
    fit = HistGradientBoostingRegressor.fit

    def observed(self: HistGradientBoostingRegressor, *args: object, **kwargs: object) -> object:
        seen.append((threading.current_thread().name, pools()))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", observed)
    yield seen


@pytest.mark.parametrize(
    ("cores", "at_once", "expected"),
    [(2, 1, 2), (2, 2, 1), (2, 3, 1), (8, 2, 4), (8, 3, 2), (8, 16, 1), (1, 1, 1), (3, 0, 3)],
)
def test_the_rule_divides_the_cores_among_the_fits_at_once(cores: int, at_once: int, expected: int) -> None:
    assert threads_per_fit(cores, at_once) == expected


@pytest.mark.parametrize(
    ("setting", "cells", "expected"),
    [(AUTO, 99_999, 1), (AUTO, SMALL_FIT_CELLS, 2), (AUTO, None, 2), (2, 10, 2), (3, 10, 3)],
)
def test_a_small_table_is_fitted_on_one_thread_unless_told(
    setting: int | Literal["auto"], cells: int | None, expected: int
) -> None:
    choice = choose(setting, 2, 1, cells=cells)
    assert choice.threads == expected
    assert ("a small table" in choice.describe("fit")) == (expected == 1)


def test_the_training_job_fits_a_small_table_on_one_thread(
    workdir: Path, tracking_uri: str, two_cores: None, fits: list, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_pools_of_two_threads()
    assert main(["run", str(CONFS / "quickstart.yaml")]) == 0
    assert [seen for _, seen in fits] == [{"openmp": 1, "blas": 1}]
    err = capsys.readouterr().err
    assert "native threads: 2 per fit (2 cores; set job.threads to change)" in err
    assert (
        "native threads: now 1 per fit (2 cores, a small table: 3,310 cells, fewer than 100,000; "
        "set job.threads to change)" in err
    )


def test_the_choice_counts_the_trials_of_other_workers_and_keeps_a_number_given() -> None:
    alone = choose(AUTO, cores=8, here=2)
    assert alone.threads == 4
    assert alone.describe() == "4 per trial (8 cores, 2 trials at once; set job.threads to change)"
    shared = choose(AUTO, cores=8, here=1, elsewhere={"host:1:1": 2, "host:2:1": 1})
    assert (shared.threads, shared.elsewhere, shared.workers) == (2, 3, 2)
    assert "4 trials at once on this host: 1 here, 3 by 2 other workers" in shared.describe()
    given = choose(3, cores=2, here=2)
    assert given.threads == 3
    assert (
        given.describe()
        == "3 per trial (2 cores, 2 trials at once, more threads than cores; as job.threads says)"
    )
    assert choose(AUTO, cores=2, here=1).describe("fit") == "2 per fit (2 cores; set job.threads to change)"


def test_n_jobs_trials_run_their_fits_with_the_cores_shared_out(
    workdir: Path, tracking_uri: str, two_cores: None, fits: list, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_pools_of_two_threads()
    before = pools()
    config = tuning(workdir, SEARCHER)
    assert main(["run", config, HGB, "job.searcher.n_jobs=2"]) == 0
    assert len(fits) == 4 * 3
    assert {name for name, _ in fits} != {threading.main_thread().name}, "the trials ran in Optuna's threads"
    assert all(seen == {"openmp": 1, "blas": 1} for _, seen in fits), fits
    assert "native threads: 1 per trial (2 cores, 2 trials at once; set job.threads to change)" in (
        capsys.readouterr().err
    )
    assert pools() == before, "the process gets its own pools back"
    assert {t.user_attrs["folds"]["threads"] for t in study_of(workdir).trials} == {1}
    _, children = runs_of(tracking_uri)
    assert {c.data.tags["trainyard.native_threads"] for c in children} == {"1"}


def test_a_worker_of_the_study_on_this_host_takes_its_share(
    workdir: Path, tracking_uri: str, two_cores: None, fits: list, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_pools_of_two_threads()
    config = tuning(workdir, SEARCHER)
    with another_live_worker() as token:
        study_with_a_running_trial_of(workdir, token)
        assert main(["run", config, HGB, "job.study.name=shared", "job.searcher.n_trials=3"]) == 0
    assert fits and all(seen == {"openmp": 1, "blas": 1} for _, seen in fits), fits
    assert "1 per trial (2 cores, 2 trials at once on this host: 1 here, 1 by another worker;" in (
        capsys.readouterr().err
    )


def test_threads_given_are_set_as_given(
    workdir: Path, tracking_uri: str, two_cores: None, fits: list, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tuning(workdir, SEARCHER)
    assert main(["run", config, HGB, "job.threads=3", "job.searcher.n_trials=2"]) == 0
    assert fits and all(seen == {"openmp": 3, "blas": 3} for _, seen in fits), "above the cores: as asked"
    assert (
        "native threads: 3 per trial (2 cores, 1 trial at once, more threads than cores; as job.threads says)"
        in capsys.readouterr().err
    )


def test_a_running_search_steps_down_when_another_worker_starts_and_back_up_when_it_is_gone() -> None:
    needs_pools_of_two_threads()
    now = [0.0]
    others: dict[str, int] = {}
    limiter = NativeThreads(AUTO, here=1, elsewhere=lambda: dict(others), cores=2, clock=lambda: now[0])
    with limiter:
        assert limiter.before_fit() == 2 and pools()["openmp"] == 2
        others["host:123:456"] = 1
        now[0] += 0.5
        assert limiter.before_fit() == 2, "counted again at most every second"
        now[0] += 1.0
        assert limiter.before_fit() == 1 and pools() == {"openmp": 1, "blas": 1}
        others.clear()  # between two of its trials: still counted for a while
        now[0] += 1.5
        assert limiter.before_fit() == 1
        now[0] += REMEMBER_SECONDS
        assert limiter.before_fit() == 2 and pools()["openmp"] == 2


def test_the_training_job_uses_every_core_unless_told(
    workdir: Path,
    tracking_uri: str,
    two_cores: None,
    tables_not_small: None,
    fits: list,
    capsys: pytest.CaptureFixture[str],
) -> None:
    needs_pools_of_two_threads()
    assert main(["run", str(CONFS / "quickstart.yaml")]) == 0
    assert main(["run", str(CONFS / "quickstart.yaml"), "job.threads=1"]) == 0
    assert [seen for _, seen in fits] == [{"openmp": 2, "blas": 2}, {"openmp": 1, "blas": 1}]
    err = capsys.readouterr().err
    assert "native threads: 2 per fit (2 cores; set job.threads to change)" in err
    assert "native threads: 1 per fit (2 cores; as job.threads says)" in err


@pytest.mark.parametrize(("value", "accepted"), [("auto", True), ("4", True), ("0", False), ("two", False)])
def test_threads_is_a_number_or_auto(workdir: Path, value: str, accepted: bool) -> None:
    from trainyard.errors import ConfigurationError

    config = tuning(workdir, SEARCHER)
    for path, overrides in ((config, [HGB]), (str(CONFS / "quickstart.yaml"), [])):
        if accepted:
            job = load_settings([path], [*overrides, f"job.threads={value}"]).job
            assert job.threads == (value if value == AUTO else int(value))  # type: ignore[attr-defined]
        else:
            with pytest.raises(ConfigurationError, match=r"job\.threads"):
                load_settings([path], [*overrides, f"job.threads={value}"])


def test_workers_counted_are_the_other_live_ones_of_this_host(workdir: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "from trainyard.records import worker_token as t; print(t())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with another_live_worker() as live:
        study = study_with_a_running_trial_of(workdir, live)
        for token in (live, dead, worker_token(), f"elsewhere-{socket.gethostname()}:1:1"):
            trial = study.ask()
            study._storage.set_trial_user_attr(trial._trial_id, "trainyard.worker", token)
        finished = study.ask()
        study._storage.set_trial_user_attr(finished._trial_id, "trainyard.worker", live)
        study.tell(finished, 1.0)
        assert running_on_this_host(study) == {live: 2}
        assert running_on_this_host(study, mine=live) == {worker_token(): 1}


def test_auto_keeps_pools_the_environment_made_smaller(workdir: Path) -> None:
    config = tuning(workdir, SEARCHER)
    data = workdir / "data" / "diabetes.csv"  # a table large enough for more than one thread
    header, *rows = data.read_text().splitlines()
    data.write_text("\n".join([header, *rows * 40]) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "trainyard.cli", "run", config, HGB, "job.searcher.n_trials=1"],
        cwd=workdir,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    cores = usable_cores()
    kept = f"{cores} by the rule but kept at 1 by OMP_NUM_THREADS=1" if cores > 1 else "1 trial at once;"
    assert f"native threads: 1 per trial ({cores} core" in done.stderr and kept in done.stderr, done.stderr


def test_the_service_shares_the_cores_out_among_its_jobs(
    two_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job of a service with 2 workers gets half the cores; a number given stays as given."""
    monkeypatch.setattr("trainyard.runtime.threads._jobs_at_once", 1)
    share_cores_among_jobs(2)
    choice = NativeThreads(AUTO, unit="fit", cells=SMALL_FIT_CELLS).choice
    assert choice.threads == 1
    assert choice.describe("fit") == (
        "1 per fit (1 core of this job's share: 2 jobs at once in the service; set job.threads to change)"
    )
    assert NativeThreads(2, unit="fit").choice.threads == 2
    share_cores_among_jobs(1)
    assert NativeThreads(AUTO, unit="fit", cells=SMALL_FIT_CELLS).choice.threads == 2
