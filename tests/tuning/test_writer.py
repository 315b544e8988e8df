"""The MLflow writer process of the tuning job: the job never depends on it, and it never outlives it."""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.jobs.test_tuning import (
    _spawn,
    another_live_worker,
    runs_of,
    study_of,
    study_with_a_running_trial_of,
    tuning,
)
from trainyard.cli import main
from trainyard.tuning import writer_process as mirror

# Trials of a few milliseconds (a tree on 442 rows, random search): the writer process starts.
SHORT_TRIALS = (
    "{KIND: random, seed: 1, n_trials: 10, space: {max_depth: [2, 4, 6, 8], min_samples_leaf: [1, 5]}}"
)


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait_for(predicate, seconds: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _finished(workdir: Path) -> int:
    journal = workdir / "optuna-journal.log"
    if not journal.exists() or journal.stat().st_size == 0:
        return 0
    return len([t for t in study_of(workdir).trials if t.state.is_finished()])


def _writer_pid(run: mlflow.entities.Run) -> int:
    return int(run.data.tags["trainyard.writer"].split(":")[1])


def _written(tracking_uri: str) -> int:
    """Child runs in the store so far (0 before the writer has made the experiment and the parent)."""
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tune")
    if experiment is None:
        return 0
    return len(client.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId != ''"))


def test_the_writer_does_the_mlflow_work_and_the_job_never_loads_mlflow(
    workdir: Path, tracking_uri: str
) -> None:
    script = (
        "import sys\nfrom trainyard.cli import main\n"
        f"code = main(['run', {tuning(workdir)!r}, 'job.searcher.n_trials=3'])\n"
        "print('mlflow loaded:', 'mlflow' in sys.modules)\nsys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},  # log lines unwrapped
    )
    assert done.returncode == 0, done.stderr
    assert "mlflow loaded: False" in done.stdout and "3 child runs written" in done.stderr
    parent, children = runs_of(tracking_uri)
    assert sorted(int(c.data.tags["trainyard.trial"]) for c in children) == list(range(3))
    writers = {_writer_pid(c) for c in children}
    assert len(writers) == 1 and os.getpid() not in writers
    assert parent.info.status == "FINISHED" and parent.data.tags["trainyard.best_trial"].isdigit()
    assert {i.tags[0].value for i in parent.inputs.dataset_inputs} == {"inputs", "targets"}
    assert mlflow.MlflowClient(tracking_uri).download_artifacts(parent.info.run_id, "config.yaml")


def test_an_invalid_config_stops_the_early_writer(workdir: Path) -> None:
    assert main(["run", tuning(workdir), "job.searcher.n_trials=-1"]) == 2
    assert _children_of(os.getpid()) == [], "the writer started before validation is gone"


def test_a_writer_that_cannot_start_leaves_the_work_to_the_job(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(mirror, "WRITER_COMMAND", [sys.executable, "-c", "import sys; sys.exit(3)"])
    assert main(["run", tuning(workdir), "job.searcher.n_trials=5", "job.plots=true"]) == 0
    parent, children = runs_of(tracking_uri)
    assert parent.info.status == "FINISHED" and len(children) == 5
    assert all(c.info.status == "FINISHED" for c in children)
    plots = mlflow.MlflowClient(tracking_uri).list_artifacts(parent.info.run_id, "plots")
    artifacts = {artifact.path for artifact in plots}
    assert "plots/param_importances.png" in artifacts
    err = capsys.readouterr().err
    assert "the MLflow writer process stopped (exit code 3)" in err and "MLflow opened in the job" in err


def test_a_writer_killed_mid_study_leaves_no_trial_unwritten(workdir: Path, tracking_uri: str) -> None:
    # Two threads: the job takes over in whichever thread meets the stopped writer first.
    job = _spawn(workdir, tuning(workdir, SHORT_TRIALS), "job.searcher.n_trials=150", "job.searcher.n_jobs=2")
    _wait_for(lambda: _finished(workdir) >= 3 and len(_children_of(job.pid)) == 1)
    (writer,) = _children_of(job.pid)
    _wait_for(lambda: _written(tracking_uri) >= 3)  # the writer is writing
    os.kill(writer, signal.SIGKILL)
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output
    assert "MLflow writer process stopped" in output
    parent, children = runs_of(tracking_uri)
    numbers = sorted(int(c.data.tags["trainyard.trial"]) for c in children)
    assert numbers == list(range(150)), "each trial written once, by the writer or by the job"
    assert {_writer_pid(c) for c in children} == {writer, job.pid}
    assert parent.info.status == "FINISHED" and all(c.info.status == "FINISHED" for c in children)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_writer_dies_with_a_killed_job(workdir: Path) -> None:
    job = _spawn(workdir, tuning(workdir, SHORT_TRIALS), "job.searcher.n_trials=2000")
    _wait_for(lambda: _finished(workdir) >= 2 and len(_children_of(job.pid)) == 1)
    (writer,) = _children_of(job.pid)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    _wait_for(lambda: not Path(f"/proc/{writer}").exists() or "Z" in _state(writer), seconds=10)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_an_mlflow_store_that_cannot_open_fails_the_job_and_keeps_the_trials(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The writer cannot open the store: the job meets the same error itself and reports it."""
    config = tuning(workdir, SHORT_TRIALS)
    assert main(["run", config, "job.searcher.n_trials=4", "job.mlflow.tracking_uri=./mlruns"]) == 1
    err = capsys.readouterr().err
    assert "error: cannot open the MLflow store ./mlruns" in err and "Traceback" not in err
    assert "writer process stopped" not in err and "could not be ended" not in err, "the error, said once"
    assert _finished(workdir) >= 1, "the trials finished before the error are kept in the study"
    assert _children_of(os.getpid()) == []


def test_a_job_entered_but_never_run_leaves_no_writer_and_no_running_run(
    workdir: Path, tracking_uri: str
) -> None:
    from trainyard.config import load_settings

    job = load_settings([tuning(workdir)]).job
    with job:
        assert len(_children_of(os.getpid())) == 1, "prepare() starts the writer"
        _wait_for(lambda: _runs_in(tracking_uri) > 0)  # the writer has opened the parent run
    assert _children_of(os.getpid()) == []
    parent, _ = runs_of(tracking_uri)
    assert parent.info.status == "KILLED"


def _runs_in(tracking_uri: str) -> int:
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tune")
    return 0 if experiment is None else len(client.search_runs([experiment.experiment_id]))


# The writer, with the results' logging broken (argv[1] is the job's pid, as for the real command).
BROKEN_RESULTS = (
    "import runpy, trainyard.tuning.trials as t\n"
    "def broken(*args, **kwargs):\n    raise RuntimeError('the artifact store is full')\n"
    "t.TrialLogger.log_results = broken\n"
    "runpy.run_module('trainyard.tuning.writer_process', run_name='__main__')"
)


def test_results_the_writer_cannot_log_fail_the_job_once(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(mirror, "WRITER_COMMAND", [sys.executable, "-c", BROKEN_RESULTS])
    assert main(["run", tuning(workdir, SHORT_TRIALS), "job.searcher.n_trials=3"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "error: logging the study's results to MLflow failed: RuntimeError: the artifact store is full" in err
    )
    assert "could not be ended" not in err and "MLflow opened in the job" not in err
    parent, children = runs_of(tracking_uri)
    assert parent.info.status == "FAILED" and len(children) == 3
    assert "the artifact store is full" in parent.data.tags["trainyard.error"]


class _Interrupted(io.BytesIO):
    """A pipe whose first read is interrupted by Ctrl-C, as a job waiting for its writer can be."""

    def __init__(self, data: bytes, interruptions: int) -> None:
        super().__init__(data)
        self.interruptions = interruptions

    def read(self, size: int | None = -1) -> bytes:
        if self.interruptions:
            self.interruptions -= 1
            raise KeyboardInterrupt
        return super().read(size)

    def readline(self, size: int | None = -1) -> bytes:
        if self.interruptions:
            self.interruptions -= 1
            raise KeyboardInterrupt
        return super().readline(size)


def test_a_first_interrupt_while_the_writer_ends_the_run_only_waits(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    report = pickle.dumps(mirror.MirrorReport(parent_id="abc", status="FINISHED"))
    assert mirror._await_report(_Interrupted(report, 1)).parent_id == "abc"
    said = caplog.text + capsys.readouterr().err  # wherever the trainyard logger's setup sends it
    assert "interrupt again to stop now" in said
    with pytest.raises(KeyboardInterrupt):
        mirror._await_report(_Interrupted(report, 2))


def test_sigterm_to_the_process_group_is_the_jobs_to_handle(workdir: Path, tracking_uri: str) -> None:
    """A scheduler stopping the whole group: the writer is not in it, and ends the run for the job."""
    command = [
        sys.executable,
        "-m",
        "trainyard.cli",
        "run",
        tuning(workdir, SHORT_TRIALS),
        "job.searcher.n_trials=5000",
    ]
    job = subprocess.Popen(
        command,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    _wait_for(lambda: _written(tracking_uri) >= 3)
    os.killpg(job.pid, signal.SIGTERM)
    output, _ = job.communicate(timeout=120)
    assert job.returncode != 0 and "writer process stopped" not in output, output
    assert "Traceback" not in output
    parent, _ = runs_of(tracking_uri)
    assert parent.info.status == "KILLED" and "SIGTERM" in parent.data.tags["trainyard.error"]


SPYING_WRITER = (
    "import json, sys, runpy, trainyard.tuning.plots as plots\n"
    "draw = plots.param_importances\n"
    "def spy(importances, objective):\n"
    "    with open(SEEN, 'w') as seen:\n"
    "        json.dump({'importances': importances, 'sklearn': 'sklearn' in sys.modules}, seen)\n"
    "    return draw(importances, objective)\n"
    "plots.param_importances = spy\n"
    "runpy.run_module('trainyard.tuning.writer_process', run_name='__main__')"
)


def test_the_writer_draws_the_importances_the_job_computed_without_loading_sklearn(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from trainyard.tuning.plots import importances

    seen = workdir / "seen.json"
    monkeypatch.setattr(
        mirror, "WRITER_COMMAND", [sys.executable, "-c", SPYING_WRITER.replace("SEEN", repr(str(seen)))]
    )
    assert main(["run", tuning(workdir, SHORT_TRIALS), "job.searcher.n_trials=6", "job.plots=true"]) == 0
    drawn = json.loads(seen.read_text())
    assert drawn["sklearn"] is False, "the forest of the importances is the job's"
    assert drawn["importances"] == pytest.approx(importances(study_of(workdir)))
    parent, _ = runs_of(tracking_uri)
    plots = {a.path for a in mlflow.MlflowClient(tracking_uri).list_artifacts(parent.info.run_id, "plots")}
    assert plots == {
        f"plots/{name}.png" for name in ("optimization_history", "parallel_coordinate", "param_importances")
    }


def test_importances_the_job_cannot_compute_skip_their_figure_only(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import trainyard.tuning.plots

    def fails(study: object) -> dict[str, float]:
        raise ValueError("the forest could not be fitted")

    monkeypatch.setattr(trainyard.tuning.plots, "importances", fails)
    assert main(["run", tuning(workdir, SHORT_TRIALS), "job.searcher.n_trials=3", "job.plots=true"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "plot param_importances.png skipped: the forest could not be fitted" in err
    parent, _ = runs_of(tracking_uri)
    assert parent.info.status == "FINISHED"
    plots = {a.path for a in mlflow.MlflowClient(tracking_uri).list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/optimization_history.png", "plots/parallel_coordinate.png"}


@pytest.mark.parametrize(
    ("spare_core", "shared", "drawn"), [(True, False, True), (False, False, False), (True, True, False)]
)
def test_the_writer_draws_ahead_only_on_a_core_the_trials_leave_idle(
    monkeypatch: pytest.MonkeyPatch, spare_core: bool, shared: bool, drawn: bool
) -> None:
    from types import SimpleNamespace

    calls: list[str] = []
    monkeypatch.setattr(mirror, "_draw_a_tiny_study", lambda: calls.append("drawn"))
    runs = SimpleNamespace(spec=SimpleNamespace(spare_core=spare_core), shared=lambda: shared)
    for step in mirror._plot_warm_ups(runs):  # type: ignore[arg-type]
        step()
    assert calls == (["drawn"] if drawn else [])


def test_a_job_waiting_long_for_its_writer_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    from trainyard.io.logging import LoggerService

    LoggerService().start()
    monkeypatch.setattr(mirror, "WAIT_NOTICE_SECONDS", 0.2)
    read_end, write_end = os.pipe()

    def answer_late() -> None:
        time.sleep(1.0)
        with os.fdopen(write_end, "wb") as replies:
            pickle.dump(mirror.MirrorReport(parent_id="late"), replies)

    threading.Thread(target=answer_late).start()
    with os.fdopen(read_end, "rb") as replies:
        assert mirror._await_report(replies).parent_id == "late"
    assert "still waiting for the MLflow writer to log the results" in capsys.readouterr().err


def test_a_first_interrupt_while_the_job_computes_importances_only_skips_their_figure(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import trainyard.tuning.plots

    def interrupted(study: object) -> dict[str, float]:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainyard.tuning.plots, "importances", interrupted)
    assert main(["run", tuning(workdir, SHORT_TRIALS), "job.searcher.n_trials=3", "job.plots=true"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "interrupt again to stop now" in err and "plot param_importances.png skipped: interrupted" in err
    parent, _ = runs_of(tracking_uri)
    assert parent.info.status == "FINISHED"


def test_a_writer_done_before_the_importances_arrive_still_reports(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another live worker: the writer leaves the plots to it and answers without reading the
    importances, which the job sends late (a big study's forest)."""
    import trainyard.tuning.plots

    def slow(study: object) -> dict[str, float]:
        time.sleep(3)
        return {"max_depth": 1.0}

    monkeypatch.setattr(trainyard.tuning.plots, "importances", slow)
    with another_live_worker() as token:
        study_with_a_running_trial_of(workdir, token)
        config = tuning(workdir, SHORT_TRIALS)
        assert (
            main(["run", config, "job.study.name=shared", "job.searcher.n_trials=4", "job.plots=true"]) == 0
        )
    err = " ".join(capsys.readouterr().err.split())
    assert "writer process stopped" not in err and "MLflow opened in the job" not in err
    parent, _ = runs_of(tracking_uri)
    assert parent.info.status == "RUNNING"


def test_a_trial_that_ends_after_the_run_was_ended_does_not_reopen_it(
    workdir: Path, tracking_uri: str
) -> None:
    """With n_jobs threads, a trial can end after a cancellation ended the parent run KILLED."""
    from trainyard.config import load_settings

    config = tuning(workdir, SHORT_TRIALS)
    assert main(["run", config, "job.searcher.n_trials=2"]) == 0
    job = load_settings([config], ["job.searcher.n_trials=4"]).job
    with job:
        study, writer = job._opened  # type: ignore[attr-defined, misc]
        writer.fail("KILLED", ("interrupted (Ctrl-C)", "details"))
        writer.on_trial_end(study, study.trials[0])  # a thread's trial, ending late
    parent, _ = runs_of(tracking_uri)
    assert parent.info.status == "KILLED" and parent.data.tags["trainyard.error"] == "interrupted (Ctrl-C)"
