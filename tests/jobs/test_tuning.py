"""The tuning job: searchers, tracking, resume, shared studies, failures, pruning, params_from."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
import yaml

from tests.conftest import CONFS, write_config
from trainyard.cli import main
from trainyard.config import load_settings
from trainyard.errors import ConfigurationError

TUNING = """
job:
  KIND: tuning
  mlflow: {experiment: tune}
  inputs: {KIND: csv, path: data/diabetes.csv, drop: [target]}
  targets: {KIND: csv, path: data/diabetes.csv, columns: [target]}
  model: {KIND: sklearn, estimator: DecisionTreeRegressor, params: {random_state: 0}}
  metrics: [rmse]
  splitter: {KIND: kfold, n_splits: 3}
  plots: false
  searcher: SEARCHER
"""
TPE = """
    KIND: optuna
    sampler: {KIND: tpe, seed: 55, n_startup_trials: 3}
    n_trials: 6
    space:
      max_depth: range(2, 10)
      min_samples_leaf: choice(1, 5, 10, 20)
      ccp_alpha: tag(log, interval(0.001, 10.0))"""


def tuning(workdir: Path, searcher: str = TPE, extra: str = "") -> str:
    """A tuning config file with this searcher (a YAML block or flow mapping)."""
    return write_config(workdir, TUNING.replace("SEARCHER", searcher) + extra)


def runs_of(
    tracking_uri: str, experiment: str = "tune"
) -> tuple[mlflow.entities.Run, list[mlflow.entities.Run]]:
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, "one parent run per study"
    return parents[0], [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]


def study_of(workdir: Path, name: str | None = None) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(workdir / "optuna-journal.log")))
    names = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name or names[0], storage=storage)


@contextlib.contextmanager
def another_live_worker() -> Iterator[str]:
    """A process that stays alive while the block runs; yields its worker token."""
    names_itself = "import time; from trainyard.records import worker_token as t; print(t(), flush=True); time.sleep(300)"
    other = subprocess.Popen([sys.executable, "-c", names_itself], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None
        yield other.stdout.readline().strip()
    finally:
        other.kill()
        other.wait()


def study_with_a_running_trial_of(workdir: Path, token: str, name: str = "shared") -> optuna.Study:
    """A new study in the default journal whose one trial runs in the worker of ``token``."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(workdir / "optuna-journal.log")))
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    running = study.ask()
    study._storage.set_trial_user_attr(running._trial_id, "trainyard.worker", token)
    return study


def params_of(study: optuna.Study) -> list[tuple[object, ...]]:
    return [tuple(sorted(t.params.items())) for t in study.trials if t.params]


def test_tuning_end_to_end(workdir: Path, tracking_uri: str) -> None:
    config = tuning(workdir)
    assert main(["run", config, "job.plots=true"]) == 0
    parent, children = runs_of(tracking_uri)
    assert parent.info.status == "FINISHED" and len(children) == 6
    child = children[0]
    assert child.info.status == "FINISHED" and set(child.data.params) == {
        "max_depth",
        "min_samples_leaf",
        "ccp_alpha",
    }
    assert {"rmse_mean", "rmse_std", "rmse_fold", "fit_time"} <= set(child.data.metrics)
    history = mlflow.MlflowClient(tracking_uri).get_metric_history(child.info.run_id, "rmse_fold")
    assert [m.step for m in history] == [0, 1, 2]
    trial = study_of(workdir, parent.data.tags["trainyard.study"]).trials[
        int(child.data.tags["trainyard.trial"])
    ]
    assert float(child.data.tags["trainyard.duration_s"]) == pytest.approx(
        trial.duration.total_seconds(), abs=0.002
    )
    assert child.info.start_time == int(trial.datetime_start.timestamp() * 1000)
    study_name = parent.data.tags["trainyard.study"]
    assert all(c.data.tags["trainyard.study"] == study_name for c in children)
    # the parent: lineage, config, best params and score, results table, plots
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == {"inputs", "targets"}
    study = study_of(workdir, study_name)
    assert parent.data.metrics["best_rmse"] == pytest.approx(study.best_value)
    assert parent.data.tags["best.max_depth"] == str(study.best_params["max_depth"])
    artifacts = {a.path for a in mlflow.artifacts.list_artifacts(run_id=parent.info.run_id)}
    assert {"config.yaml", "best_params.json", "trials.csv", "plots"} <= artifacts
    table = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="trials.csv")
    )
    assert len(table) == 6 and "param_max_depth" in table.columns
    plots = {
        a.path for a in mlflow.artifacts.list_artifacts(run_id=parent.info.run_id, artifact_path="plots")
    }
    assert plots == {
        "plots/optimization_history.png",
        "plots/param_importances.png",
        "plots/parallel_coordinate.png",
    }


def test_rerun_resumes_and_tops_up_without_repeating_parameters(workdir: Path, tracking_uri: str) -> None:
    config = tuning(workdir)
    assert main(["run", config, "job.searcher.n_trials=4"]) == 0
    assert main(["run", config, "job.searcher.n_trials=7"]) == 0
    assert main(["run", config, "job.searcher.n_trials=7"]) == 0, "nothing left to do is fine"
    parent, children = runs_of(tracking_uri)
    study = study_of(workdir)
    assert len(study.trials) == 7 and len(children) == 7 and parent.info.status == "FINISHED"
    assert len(set(params_of(study))) == 7, "the re-seeded sampler proposed new parameters"


def test_same_seed_reproduces_a_fresh_study(workdir: Path, tracking_uri: str) -> None:
    config = tuning(workdir)
    assert main(["run", config, "job.study.name=first"]) == 0
    assert main(["run", config, "job.study.name=second", "job.mlflow.experiment=other"]) == 0
    assert params_of(study_of(workdir, "first")) == params_of(study_of(workdir, "second"))


def test_folds_sliced_once_or_per_trial_give_the_same_study(
    workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tuning(workdir)
    assert main(["run", config, "job.study.name=kept"]) == 0
    monkeypatch.setattr("trainyard.jobs.tuning.KEEP_FOLD_COPIES_UP_TO", 0)  # as for data too large to copy
    assert main(["run", config, "job.study.name=sliced", "job.mlflow.experiment=other"]) == 0
    kept, sliced = study_of(workdir, "kept"), study_of(workdir, "sliced")
    assert [t.values for t in kept.trials] == [t.values for t in sliced.trials]
    assert [t.user_attrs["folds"]["scores"] for t in kept.trials] == [
        t.user_attrs["folds"]["scores"] for t in sliced.trials
    ]


def test_tpe_models_one_metric_jointly_by_default() -> None:
    from trainyard.tuning.searchers import TpeSampler

    study = optuna.create_study(sampler=TpeSampler(n_startup_trials=2).build(0))
    study.optimize(lambda t: t.suggest_int("a", 0, 9) + t.suggest_float("b", 0, 1), n_trials=3)
    study.ask()
    asked = study.trials[-1]
    assert set(study.sampler.infer_relative_search_space(study, asked)) == {"a", "b"}
    independent = TpeSampler(n_startup_trials=2, multivariate=False).build(0)
    assert independent.infer_relative_search_space(study, asked) == {}


@pytest.mark.parametrize(
    ("override", "same"),
    [
        ("job.searcher.n_trials=50", True),
        ("job.searcher.timeout=600", True),
        ("job.searcher.n_jobs=2", True),
        ("job.plots=true", True),
        ("job.splitter.n_splits=3", True),  # the value it had, written out
        ("job.searcher.sampler.multivariate=null", True),  # the default, written out
        ("job.searcher.sampler.seed=56", False),
        ("job.searcher.space.max_depth=range(2, 11)", False),
        ("job.splitter.n_splits=4", False),
        ("job.splitter={KIND: kfold, n_splits: 3, shuffle: false}", False),
        ("job.metrics=[mae]", False),
        ("job.model.params.random_state=1", False),
        ("job.mlflow.experiment=other", False),
    ],
)
def test_default_study_names_follow_what_is_searched(workdir: Path, override: str, same: bool) -> None:
    config = tuning(workdir)
    name = load_settings([config]).job.study_name()
    assert (load_settings([config], [override]).job.study_name() == name) is same


def test_study_names_hash_no_default_so_new_fields_and_defaults_keep_them() -> None:
    from trainyard.core.splitters import KFoldSplitter
    from trainyard.jobs.tuning import _explicit

    assert _explicit(KFoldSplitter()) == {"KIND": "kfold"}
    assert _explicit(KFoldSplitter(n_splits=3)) == {"KIND": "kfold", "n_splits": 3}
    assert _explicit([KFoldSplitter(seed=None)]) == [{"KIND": "kfold", "seed": None}]


def test_grid_search_is_exhaustive(workdir: Path, tracking_uri: str) -> None:
    config = tuning(
        workdir, "{KIND: grid, space: {max_depth: [2, 4, 6], min_samples_leaf: 'range(5, 15, step=5)'}}"
    )
    assert main(["run", config]) == 0
    study = study_of(workdir)
    assert len(study.trials) == 9 and len(set(params_of(study))) == 9


def test_a_seeded_grid_tries_its_points_in_the_same_order(workdir: Path, tracking_uri: str) -> None:
    """It matters when n_trials (or a timeout) stops the search before the whole grid."""
    grid = (
        "{KIND: grid, seed: 7, n_trials: 4, space: {max_depth: [2, 3, 4, 5], min_samples_leaf: [1, 5, 10]}}"
    )
    for name in ("first", "second"):
        assert main(["run", tuning(workdir, grid), f"job.study.name={name}"]) == 0
    first, second = (params_of(study_of(workdir, name)) for name in ("first", "second"))
    assert first == second and len(set(first)) == 4


def test_random_search(workdir: Path, tracking_uri: str) -> None:
    config = tuning(workdir, "{KIND: random, seed: 3, n_trials: 5, space: {max_depth: 'range(2, 30)'}}")
    assert main(["run", config]) == 0
    assert len(study_of(workdir).trials) == 5


def test_multi_objective_gives_a_pareto_front(workdir: Path, tracking_uri: str) -> None:
    nsga2 = TPE.replace(
        "{KIND: tpe, seed: 55, n_startup_trials: 3}", "{KIND: nsga2, seed: 1, population_size: 4}"
    )
    config = tuning(workdir, nsga2)
    assert main(["run", config, "job.metrics=[rmse, mae]", "job.best_by=mae"]) == 0
    parent, _ = runs_of(tracking_uri)
    front = mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/pareto_front.json")
    assert front and all(len(point["values"]) == 2 for point in front)
    assert parent.data.metrics["best_mae"] == pytest.approx(min(point["values"][1] for point in front))


RIDGE = "DecisionTreeRegressor, params: {random_state: 0}", "Ridge"  # values refused only at fit: lbfgs


def test_failed_trials_are_recorded_and_the_study_goes_on(workdir: Path, tracking_uri: str) -> None:
    searcher = "{KIND: grid, space: {alpha: [0.1, 1.0, 10.0], solver: [svd, lbfgs]}}"
    config = write_config(workdir, Path(tuning(workdir, searcher)).read_text().replace(*RIDGE))
    assert main(["run", config]) == 0
    parent, children = runs_of(tracking_uri)
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(children) == 6 and len(failed) == 3
    assert all("failed to fit" in c.data.tags["trainyard.error"] for c in failed)
    assert parent.data.tags["best.solver"] == "svd"


def test_every_trial_failing_fails_the_job(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    searcher = "{KIND: grid, space: {alpha: [0.1, 1.0], solver: [lbfgs]}}"
    config = write_config(workdir, Path(tuning(workdir, searcher)).read_text().replace(*RIDGE))
    assert main(["run", config]) == 1
    assert "no trial of study" in capsys.readouterr().err
    parent, children = runs_of(tracking_uri)
    assert parent.info.status == "FAILED" and len(children) == 2


@pytest.mark.parametrize("pruner", ["{KIND: median, n_startup_trials: 2}", "{KIND: hyperband}"])
def test_pruning_stops_bad_trials_after_a_fold(workdir: Path, tracking_uri: str, pruner: str) -> None:
    searcher = (
        "{KIND: random, seed: 0, n_trials: 12, space: {alpha: 'tag(log, interval(0.001, 1e7))'}, "
        f"pruner: {pruner}}}"
    )
    config = tuning(workdir, searcher).replace("DecisionTreeRegressor, params: {random_state: 0}", "Ridge")
    config = write_config(
        workdir, Path(config).read_text().replace("DecisionTreeRegressor, params: {random_state: 0}", "Ridge")
    )
    assert main(["run", config, "job.splitter.n_splits=5"]) == 0
    study = study_of(workdir)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "very large alphas score far worse than the median and are pruned"
    _, children = runs_of(tracking_uri)
    assert sum(c.data.tags["trainyard.state"] == "PRUNED" for c in children) == len(pruned)


def training_from(workdir: Path, run_id: str, params: str = "") -> str:
    """A training config of the diabetes tree whose parameters come from tuning run ``run_id``."""
    training = f"""
job:
  KIND: training
  mlflow: {{experiment: train}}
  inputs: {{KIND: csv, path: data/diabetes.csv, drop: [target]}}
  targets: {{KIND: csv, path: data/diabetes.csv, columns: [target]}}
  model: {{KIND: sklearn, estimator: DecisionTreeRegressor, {params}params_from: {{run_id: {run_id}}}}}
  metrics: [rmse]
"""
    return write_config(workdir, training, "train.yaml")


def test_params_from_a_tuning_run_and_from_a_study(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", tuning(workdir)]) == 0
    parent, _ = runs_of(tracking_uri)
    study = study_of(workdir)
    path = training_from(workdir, parent.info.run_id, "params: {random_state: 0}, ")
    assert main(["run", path]) == 0
    assert main(["run", path, f"job.model.params_from={{run_id: null, study: {study.study_name}}}"]) == 0
    capsys.readouterr()
    assert main(["run", path, "job.model.params_from={run_id: null, study: nothing}"]) == 1
    assert "no study 'nothing' in" in capsys.readouterr().err
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("train").experiment_id], "attributes.status = 'FINISHED'"
    )
    assert len(runs) == 2
    for run in runs:
        assert run.data.params["tuned.max_depth"] == str(study.best_params["max_depth"])
        assert run.data.params["tuned.random_state"] == "0"


def test_params_from_carries_the_tuning_jobs_fixed_params_and_names_differences(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """'Tune, then train the best' with no numbers copied: a fixed min_samples_split=7 comes along."""
    config = tuning(workdir)
    fixed = "job.model.params={random_state: 0, min_samples_split: 7}"
    assert main(["run", config, fixed, "job.searcher.n_trials=3"]) == 0
    parent, _ = runs_of(tracking_uri)
    path = training_from(workdir, parent.info.run_id)
    capsys.readouterr()
    assert main(["run", path]) == 0
    assert "job.model.params_from:" not in capsys.readouterr().err, "same model: nothing to warn of"
    study = study_of(workdir).study_name
    other = ["job.model.estimator=ExtraTreesRegressor", "job.model.scale=true"]
    assert main(["run", path, f"job.model.params_from={{run_id: null, study: {study}}}", *other]) == 0
    err = capsys.readouterr().err
    assert "the parameters were tuned for DecisionTreeRegressor, this job trains ExtraTreesRegressor" in err
    assert "tuned with model.scale=False, this job has True" in err
    client = mlflow.MlflowClient(tracking_uri)
    for run in client.search_runs([client.get_experiment_by_name("train").experiment_id]):
        params = run.data.params
        assert params["tuned.min_samples_split"] == "7" and params["tuned.random_state"] == "0"
        assert params["tuned.max_depth"] == parent.data.tags["best.max_depth"]


def test_params_from_errors(workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    quickstart = str(CONFS / "quickstart.yaml")
    assert main(["run", quickstart, "job.model.params_from={run_id: 0123abc}"]) == 1
    assert "no MLflow run '0123abc'" in capsys.readouterr().err
    assert main(["run", quickstart, "job.model.params_from={study: nothing}"]) == 1
    assert "params_from.study: no study storage at" in capsys.readouterr().err
    assert main(["run", quickstart, "job.model.params_from={}"]) == 2
    assert "give exactly one of run_id" in capsys.readouterr().err
    assert main(["run", quickstart, "job.model.params_from={study: x, storage: 'sqlite://'}"]) == 2
    err = capsys.readouterr().err
    assert "job.model.params_from.storage = 'sqlite://': an in-memory SQLite database" in err
    assert "Traceback" not in err and "unexpected" not in err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("job.searcher.space.max_depth=rnge(2,3)", "job.searcher.space"),
        ("job.searcher.sampler.KIND=annealing", "unknown KIND; expected one of: cmaes, gp, nsga2, tpe"),
        ("job.metrics=[rmse, mae]", "pruning works with one metric only"),
        ("job.searcher.n_trials=null", "give the searcher a budget"),
        ("job.best_by=r2", "'r2' is not one of the metrics: rmse"),
        ("job.metrics=[accuracy]", "accuracy do not apply to a regressor"),
    ],
)
def test_configuration_errors(workdir: Path, override: str, expected: str) -> None:
    config = tuning(workdir, TPE + "\n    pruner: {KIND: median}")
    with pytest.raises(ConfigurationError, match=None) as caught:
        load_settings([config], [override])
    assert expected in str(caught.value)


def test_empty_space_is_an_error(workdir: Path) -> None:
    with pytest.raises(ConfigurationError, match="the search space is empty"):
        load_settings([tuning(workdir, "{KIND: random, n_trials: 3, space: {}}")])


def test_an_expression_split_by_a_yaml_flow_mapping_says_to_quote_it(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tuning(workdir, "{KIND: random, n_trials: 3, space: {max_depth: range(2, 10)}}")
    assert main(["run", config]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "job.searcher.space: max_depth: not a complete call: inside a YAML {...} or [...]" in err
    assert "which left 'range(2' and the parameter(s) '10)'; quote the expression ('range(2, 10)')" in err
    # numbers among the pieces: YAML makes them int or float keys, which are not parameter names
    stepped = tuning(workdir, "{KIND: random, n_trials: 3, space: {max_depth: range(2, 10, 2)}}")
    with pytest.raises(ConfigurationError, match=r"quote the expression \('range\(2, 10, 2\)'\)"):
        load_settings([stepped])
    # the same from the command line: the override's pieces come after the config's parameters
    assert main(["run", tuning(workdir), "job.searcher.space={max_depth: range(2, 10, 2)}"]) == 2
    assert "quote the expression ('range(2, 10, 2)')" in " ".join(capsys.readouterr().err.split())
    quoted = tuning(workdir, "{KIND: random, n_trials: 3, space: {max_depth: 'range(2, 10)'}}")
    assert load_settings([quoted]).job.searcher.space["max_depth"] == "range(2, 10)"  # type: ignore[attr-defined]


def test_grid_needs_a_finite_space(workdir: Path) -> None:
    config = tuning(workdir, "{KIND: grid, space: {ccp_alpha: 'interval(0.1, 1.0)'}}")
    with pytest.raises(ConfigurationError) as caught:
        load_settings([config])
    assert "ccp_alpha" in str(caught.value) and "step" in str(caught.value)


def _spawn(workdir: Path, config: str, *overrides: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "trainyard.cli", "run", config, *overrides]
    return subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


SLOW = [  # about 0.1 s a trial, so a process can be caught mid-study
    "job.model={KIND: sklearn, estimator: RandomForestRegressor, params: {n_estimators: 30, random_state: 0}}",
    "job.searcher.space.max_depth=range(2, 12)",
]


def test_resume_after_the_process_is_killed(workdir: Path, tracking_uri: str) -> None:
    config = tuning(workdir)
    process = _spawn(workdir, config, *SLOW, "job.searcher.n_trials=200")
    deadline = time.monotonic() + 120
    completed: list[optuna.trial.FrozenTrial] = []
    while time.monotonic() < deadline and len(completed) < 4:
        time.sleep(0.3)
        if (workdir / "optuna-journal.log").exists() and optuna.get_all_study_names(
            optuna.storages.journal.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(workdir / "optuna-journal.log"))
            )
        ):
            completed = [t for t in study_of(workdir).trials if t.state.is_finished()]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    before = {t.number: t.params for t in study_of(workdir).trials if t.state.is_finished()}
    assert len(before) >= 4
    assert main(["run", config, *SLOW, f"job.searcher.n_trials={len(study_of(workdir).trials) + 2}"]) == 0
    study = study_of(workdir)
    after = {t.number: t.params for t in study.trials if t.state.is_finished()}
    assert all(after[number] == params for number, params in before.items()), "no finished trial is lost"
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    parent, children = runs_of(tracking_uri)
    assert parent.info.status == "FINISHED"
    assert sorted(int(c.data.tags["trainyard.trial"]) for c in children) == sorted(after)
    assert all(c.info.status != "RUNNING" for c in children)


def test_two_processes_share_one_study(workdir: Path, tracking_uri: str) -> None:
    config = tuning(workdir)
    overrides = [*SLOW, "job.searcher.n_trials=40", "job.study.name=shared"]
    processes = [_spawn(workdir, config, *overrides) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    study = study_of(workdir, "shared")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 40 <= len(finished) <= 41, "the workers topped up to the budget together"
    assert len(set(params_of(study))) == len(study.trials), "no two trials proposed the same parameters"
    workers = {t.user_attrs["trainyard.worker"] for t in study.trials}
    assert len(workers) == 2, f"both processes ran trials: {outputs}"
    _, children = runs_of(tracking_uri)
    assert len(children) == len(finished)


def test_example_tuning_config_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(CONFS / "tuning.yaml"), "--dry-run"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["job"]["searcher"]["space"]["max_depth"] == "range(2, 8)"


def test_cmaes_sampler(workdir: Path, tracking_uri: str) -> None:
    cmaes = TPE.replace("{KIND: tpe, seed: 55, n_startup_trials: 3}", "{KIND: cmaes, seed: 2}")
    assert main(["run", tuning(workdir, cmaes), "job.searcher.n_trials=5"]) == 0
    assert len([t for t in study_of(workdir).trials if t.state.is_finished()]) == 5


def test_gp_sampler_runs_on_pytorch_and_says_so_without_it(workdir: Path, tracking_uri: str) -> None:
    """PyTorch is not in the lock (see docs/tuning.md): in the project's environment the config is
    refused; where PyTorch is installed the sampler runs (checked in a scratch environment)."""
    gp = TPE.replace("{KIND: tpe, seed: 55, n_startup_trials: 3}", "{KIND: gp, seed: 2, n_startup_trials: 2}")
    assert gp != TPE
    if __import__("importlib").util.find_spec("torch") is None:
        with pytest.raises(ConfigurationError, match="the gp sampler runs on PyTorch"):
            load_settings([tuning(workdir, gp)])
    else:
        assert main(["run", tuning(workdir, gp), "job.searcher.n_trials=4"]) == 0
        assert len([t for t in study_of(workdir).trials if t.state.is_finished()]) == 4


def test_grid_budget_stops_at_the_grid_size(workdir: Path, tracking_uri: str) -> None:
    config = tuning(
        workdir, "{KIND: grid, n_trials: 12, space: {max_depth: [2, 4], min_samples_leaf: [1, 5]}}"
    )
    assert main(["run", config]) == 0
    assert main(["run", config]) == 0
    study = study_of(workdir)
    assert len(study.trials) == 4 and len(set(params_of(study))) == 4


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "job.searcher.space.max_deph=[3, 4]",
            "searcher.space names 'max_deph', not parameters of DecisionTreeRegressor",
        ),
        ("job.model.params_from={study: x}", "model.params_from is for training jobs"),
        ("job.splitter={KIND: stratified_kfold}", "stratifying needs classes"),
        ("job.metrics=[rmse, mae, rmse]", "job.metrics = ['rmse', 'mae', 'rmse']: rmse given more than once"),
    ],
)
def test_more_configuration_errors(workdir: Path, override: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings([tuning(workdir)], [override])
    assert expected in str(caught.value)
    assert "'KIND': 'tuning'" not in str(caught.value), "the whole job is not dumped into the message"


@pytest.mark.parametrize("metrics", ["[rmse, mae]", "[mae]"])
def test_a_study_made_for_other_metrics_is_refused(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str], metrics: str
) -> None:
    """[mae] has rmse's direction: without the names, its scores would be filed as rmse's."""
    config = tuning(workdir)
    assert main(["run", config, "job.study.name=fixed", "job.searcher.n_trials=2"]) == 0
    assert main(["run", config, "job.study.name=fixed", f"job.metrics={metrics}"]) == 2
    assert "job.metrics: study 'fixed' was made for the metrics rmse; these" in capsys.readouterr().err


def test_a_study_without_trials_takes_the_metrics_of_the_run_that_scores_first(
    workdir: Path, tracking_uri: str
) -> None:
    """A job that failed before its first trial (a missing file) does not lock the study's metrics."""
    config = tuning(workdir)
    assert main(["run", config, "job.study.name=fresh", "job.inputs.path=data/nothing.csv"]) == 1
    assert main(["run", config, "job.study.name=fresh", "job.metrics=[mae]", "job.searcher.n_trials=2"]) == 0
    assert study_of(workdir, "fresh").user_attrs["trainyard.metrics"] == ["mae"]


def test_a_study_made_before_metric_names_were_recorded_is_checked_by_direction(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tuning(workdir)
    assert main(["run", config, "job.study.name=fixed", "job.searcher.n_trials=2"]) == 0
    study = study_of(workdir, "fixed")
    study._storage.set_study_user_attr(study._study_id, "trainyard.metrics", None)  # as an older study
    assert main(["run", config, "job.study.name=fixed", "job.metrics=[rmse, mae]"]) == 2
    assert "study 'fixed' was made for 1 objective(s) (minimize)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ("max_depth: [3, 5]", "the study's choices are [2, 4, 6], not [3, 5] (choices cannot change)"),
        ("max_depth: 'range(2, 8)'", "the study searched choices, not integers"),
        (
            "ccp_alpha: 'tag(log, interval(0.001, 1.0))'",
            "the study searched it on a linear scale, not a log one",
        ),
    ],
)
def test_a_changed_space_on_a_named_study_is_refused(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str], changed: str, expected: str
) -> None:
    """Optuna would fail every new trial ('CategoricalDistribution does not support dynamic value space')."""
    space = "{max_depth: [2, 4, 6], ccp_alpha: 'interval(0.0, 1.0)'}"
    first = f"{{KIND: random, seed: 1, n_trials: 3, space: {space}}}"
    assert main(["run", tuning(workdir, first), "job.study.name=fixed"]) == 0
    field = changed.split(":")[0]
    kept = "max_depth: [2, 4, 6]" if field == "max_depth" else "ccp_alpha: 'interval(0.0, 1.0)'"
    again = first.replace(kept, changed).replace("n_trials: 3", "n_trials: 9")
    assert main(["run", tuning(workdir, again), "job.study.name=fixed"]) == 2
    err = capsys.readouterr().err
    assert f"job.searcher.space.{field}: {expected}" in err, err
    assert err.count("job.searcher.space.") == 1, "only the changed parameter"
    assert "set job.study.name to start another study" in err and "Traceback" not in err
    assert len(study_of(workdir, "fixed").trials) == 3, "no trial was run, the earlier ones stand"


def test_a_range_may_move_within_a_study(workdir: Path, tracking_uri: str) -> None:
    random = "{KIND: random, seed: 1, n_trials: 2, space: {max_depth: 'range(2, 6)'}}"
    assert main(["run", tuning(workdir, random), "job.study.name=fixed"]) == 0
    moved = random.replace("range(2, 6)", "range(4, 12)").replace("n_trials: 2", "n_trials: 4")
    assert main(["run", tuning(workdir, moved), "job.study.name=fixed"]) == 0
    trials = study_of(workdir, "fixed").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4


def test_a_run_whose_trials_all_fail_fails_though_earlier_trials_completed(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tuning(workdir)
    assert main(["run", config, "job.study.name=fixed", "job.searcher.n_trials=2"]) == 0
    broken = "job.model.params.monotonic_cst=[1]"  # valid for the config, refused by every fit
    assert main(["run", config, broken, "job.study.name=fixed", "job.searcher.n_trials=4"]) == 1
    err = capsys.readouterr().err
    assert "all 2 trials of this run failed (the study's earlier trials stand); first error:" in err
    assert "monotonic_cst" in err and "Traceback" not in err
    parent, children = runs_of(tracking_uri)
    assert parent.info.status == "FAILED" and len(children) == 4, "the failed trials are recorded"


def test_unusable_storage_names_the_field(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", tuning(workdir), "job.study.storage=mysql://nobody@127.0.0.1:1/none"]) == 2
    assert "job.study.storage: cannot open 'mysql://nobody@127.0.0.1:1/none'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("signum", "recorded", "n_jobs"),
    [(signal.SIGTERM, "SIGTERM", 1), (signal.SIGINT, "Ctrl-C", 2)],
)
def test_a_signal_stops_after_the_running_trials_and_records_them(
    workdir: Path, tracking_uri: str, signum: int, recorded: str, n_jobs: int
) -> None:
    """With n_jobs above 1 the trials run in threads, and the signal reaches the main thread."""
    config = tuning(workdir)
    process = _spawn(workdir, config, *SLOW, "job.searcher.n_trials=500", f"job.searcher.n_jobs={n_jobs}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.3)
        journal = workdir / "optuna-journal.log"
        if journal.exists() and journal.stat().st_size > 0 and len(study_of(workdir).trials) >= 3:
            break
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "stopping after the running trial" in output and "Traceback" not in output
    study = study_of(workdir)
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING], (
        "no trial left RUNNING"
    )
    parent, children = runs_of(tracking_uri)
    assert parent.info.status == "KILLED" and recorded in parent.data.tags["trainyard.error"]
    assert all(c.info.status != "RUNNING" for c in children)
    assert len(children) == len([t for t in study.trials if t.state.is_finished()]), "every trial recorded"
    assert main(["run", config, *SLOW, f"job.searcher.n_trials={len(study.trials) + 1}"]) == 0
    parent, _ = runs_of(tracking_uri)
    assert parent.info.status == "FINISHED" and "trainyard.error" not in parent.data.tags


def test_a_study_in_another_experiment_is_named(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tuning(workdir)
    assert main(["run", config, "job.study.name=s", "job.searcher.n_trials=1"]) == 0
    assert main(["run", config, "job.study.name=s", "job.mlflow.experiment=other"]) == 2
    assert (
        "study 's' is tracked in experiment 'tune'; set job.mlflow.experiment=tune" in capsys.readouterr().err
    )


def test_merging_a_list_over_a_mapping_names_the_layer(workdir: Path) -> None:
    with pytest.raises(ConfigurationError, match="command-line overrides: cannot merge it over the files"):
        load_settings([tuning(workdir)], ["job.searcher.space=[1, 2]"])


def test_two_processes_start_a_new_store_together(tmp_path: Path, example_data: Path) -> None:
    """No store and no experiment yet: the workers must not race to create them."""
    import shutil

    shutil.copytree(example_data, tmp_path / "data")
    config = tuning(tmp_path)
    processes = [_spawn(tmp_path, config, "job.searcher.n_trials=6", "job.study.name=new") for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    _, children = runs_of(f"sqlite:///{tmp_path / 'mlflow.db'}")
    finished = [t.number for t in study_of(tmp_path, "new").trials if t.state.is_finished()]
    assert 6 <= len(finished) <= 7, "two workers may overshoot the budget by the trial one was running"
    assert sorted(int(c.data.tags["trainyard.trial"]) for c in children) == sorted(finished)


def test_params_from_a_missing_storage_creates_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart = str(CONFS / "quickstart.yaml")
    assert main(["run", quickstart, "job.model.params_from={study: x, storage: typo/dir/studies.log}"]) == 1
    assert "no study storage at 'typo/dir/studies.log'" in capsys.readouterr().err
    assert not (workdir / "typo").exists()


def test_one_study_tracked_in_two_stores_keeps_one_parent_in_each(workdir: Path, tracking_uri: str) -> None:
    config = tuning(workdir)
    shared = ["job.study.name=shared", "job.study.storage=studies/shared.log"]
    other = f"sqlite:///{workdir / 'other.db'}"
    assert main(["run", config, *shared, "job.searcher.n_trials=2"]) == 0
    assert main(["run", config, *shared, "job.searcher.n_trials=3", f"job.mlflow.tracking_uri={other}"]) == 0
    assert main(["run", config, *shared, "job.searcher.n_trials=4"]) == 0
    parent, children = runs_of(tracking_uri)  # asserts one parent in this store
    assert parent.info.status == "FINISHED" and len(children) == 4, "each store mirrors the whole study"
    other_parent, other_children = runs_of(other)
    assert other_parent.info.run_id != parent.info.run_id and len(other_children) == 3


def test_a_parent_run_stays_running_while_another_worker_uses_it(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with another_live_worker() as token:
        study_with_a_running_trial_of(workdir, token)
        config = tuning(workdir)
        assert (
            main(["run", config, "job.study.name=shared", "job.searcher.n_trials=3", "job.plots=true"]) == 0
        )
        parent, _ = runs_of(tracking_uri)
        assert parent.info.status == "RUNNING", "the other worker still writes to it"
        assert "plots left to the worker that finishes last" in capsys.readouterr().err
        assert not mlflow.MlflowClient(tracking_uri).list_artifacts(parent.info.run_id, "plots")
    assert main(["run", config, "job.study.name=shared", "job.searcher.n_trials=4", "job.plots=true"]) == 0
    parent, _ = runs_of(tracking_uri)
    assert parent.info.status == "FINISHED", "the last worker ends it (the other one died meanwhile)"
    assert len(mlflow.MlflowClient(tracking_uri).list_artifacts(parent.info.run_id, "plots")) == 3


def _dead_token() -> str:
    return subprocess.run(
        [sys.executable, "-c", "from trainyard.records import worker_token as t; print(t())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _leave_unrecorded(workdir: Path, tracking_uri: str, study: str, claimant: str) -> str:
    """Make the study's parent run look as a job killed between creating and recording it leaves it."""
    from trainyard.tuning.studies import parent_attr

    parent, _ = runs_of(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    client.set_tag(parent.info.run_id, "trainyard.claim", claimant)
    client.update_run(parent.info.run_id, status="RUNNING")
    stored = study_of(workdir, study)
    stored.set_user_attr(parent_attr(tracking_uri), None)
    stored.set_user_attr(parent_attr(tracking_uri, claim=True), claimant)
    return str(parent.info.run_id)


@pytest.mark.parametrize("name", ["shared", "bob's study"])
def test_a_parent_run_a_killed_worker_left_unrecorded_is_resumed(
    workdir: Path, tracking_uri: str, name: str
) -> None:
    """A worker killed between creating the parent run and recording it in the study leaves it RUNNING."""
    from trainyard.tuning.studies import parent_attr

    config = tuning(workdir)
    assert main(["run", config, f"job.study.name={name}", "job.searcher.n_trials=2"]) == 0
    parent = _leave_unrecorded(workdir, tracking_uri, name, _dead_token())
    assert main(["run", config, f"job.study.name={name}", "job.searcher.n_trials=4"]) == 0
    resumed, children = runs_of(tracking_uri)  # asserts one parent
    assert resumed.info.run_id == parent and resumed.info.status == "FINISHED"
    assert len(children) == 4
    assert study_of(workdir, name).user_attrs[parent_attr(tracking_uri)] == parent


def test_a_study_made_anew_does_not_take_the_old_ones_parent(workdir: Path, tracking_uri: str) -> None:
    config = tuning(workdir)
    assert main(["run", config, "job.study.name=shared", "job.searcher.n_trials=3"]) == 0
    old = _leave_unrecorded(workdir, tracking_uri, "shared", _dead_token())
    (workdir / "optuna-journal.log").unlink()  # the user starts the study over
    assert main(["run", config, "job.study.name=shared", "job.searcher.n_trials=5"]) == 0
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tune").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    new = next(r for r in parents if r.info.run_id != old)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == new.info.run_id]
    assert len(parents) == 2 and len(children) == 5, "every trial of the new study has its child run"


def test_a_running_parent_run_claimed_by_a_live_worker_is_not_taken(workdir: Path, tracking_uri: str) -> None:
    with another_live_worker() as live:
        config = tuning(workdir)
        assert main(["run", config, "job.study.name=shared", "job.searcher.n_trials=2"]) == 0
        old = _leave_unrecorded(workdir, tracking_uri, "shared", _dead_token())
        mlflow.MlflowClient(tracking_uri).set_tag(old, "trainyard.claim", live)
        assert main(["run", config, "job.study.name=shared", "job.searcher.n_trials=3"]) == 0
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tune").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2 and old in {r.info.run_id for r in parents}


def test_a_study_database_has_one_storage_digest_however_its_url_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainyard.io.tracking import RunRecord
    from trainyard.tuning.study_runs import StudyRuns, StudyRunSpec

    def digest(storage: str, folder: Path) -> str:
        monkeypatch.chdir(folder)
        spec = StudyRunSpec(
            mlflow={"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"},
            storage={"storage": storage},
            study_name="s",
            claimed_at=None,
            owner="me",
            record=RunRecord("", {}, {}),
            metric_names=["rmse"],
            plots=False,
        )
        return StudyRuns(spec)._storage_digest()

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    relative = digest("sqlite:///study.db", tmp_path / "a")
    assert relative == digest(f"sqlite:///{tmp_path}/a/study.db", tmp_path / "b"), "the same file"
    assert relative != digest("sqlite:///study.db", tmp_path / "b"), "another folder: another file"


def test_a_time_budget_alone_stops_the_search(workdir: Path, tracking_uri: str) -> None:
    """n_trials: null with a timeout: the search runs trials until the time is up, then logs them."""
    config = tuning(workdir)
    assert main(["run", config, "job.searcher.n_trials=null", "job.searcher.timeout=3"]) == 0
    finished = [t for t in study_of(workdir).trials if t.state.is_finished()]
    assert len(finished) > 6, "more trials than the config's n_trials ran"
    _, children = runs_of(tracking_uri)
    assert len(children) == len(finished)


@pytest.mark.parametrize(
    ("splitter", "folds"),
    [("{KIND: time_series, n_splits: 3}", 3), ("{KIND: stratified_kfold, n_splits: 4}", 4)],
)
def test_other_splitters_cross_validate_the_trials(
    workdir: Path, tracking_uri: str, splitter: str, folds: int
) -> None:
    config = tuning(workdir)
    overrides = [f"job.splitter={splitter}", "job.searcher.n_trials=2"]
    if "stratified" in splitter:  # stratifying needs classes: the breast cancer data, a classifier
        overrides += [
            "job.inputs={KIND: csv, path: data/breast_cancer.csv, drop: [target]}",
            "job.targets={KIND: csv, path: data/breast_cancer.csv, columns: [target]}",
            "job.model={KIND: sklearn, estimator: DecisionTreeClassifier, params: {random_state: 0}}",
            "job.metrics=[f1]",
            "job.searcher.space={max_depth: 'range(2, 6)'}",
        ]
    assert main(["run", config, *overrides]) == 0
    scores = study_of(workdir).trials[0].user_attrs["folds"]["scores"]
    assert [len(values) for values in scores.values()] == [folds]


def test_repeated_signals_with_threads_leave_the_run_killed(workdir: Path, tracking_uri: str) -> None:
    """Threads cannot be interrupted: the third signal ends the job while trials still run, and a
    trial that ends after that must not reopen the ended parent run (RUNNING, error tag gone)."""
    config = tuning(workdir)
    slow = "job.model={KIND: sklearn, estimator: RandomForestRegressor, params: {n_estimators: 300}}"
    process = _spawn(workdir, config, slow, "job.searcher.n_trials=50", "job.searcher.n_jobs=2")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.3)
        journal = workdir / "optuna-journal.log"
        if (  # the journal file exists a moment before its first record (the study) is in it
            journal.exists()
            and journal.stat().st_size > 0
            and any(t.state.is_finished() for t in study_of(workdir).trials)
        ):
            break
    for _ in range(3):
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "threads cannot be interrupted" in output and "Traceback" not in output
    parent, _ = runs_of(tracking_uri)
    assert parent.info.status == "KILLED" and "trainyard.error" in parent.data.tags, output
    assert "stopped (second signal); trials running in threads end first" in output
    # (a trial its thread could not finish stays RUNNING in the study until the next run fails it:
    # test_resume_after_the_process_is_killed)


def test_folds_that_lack_a_class_still_score_and_stratified_folds_name_the_class(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True).frame.iloc[[*range(100), 100, 101]]  # class 2: two rows
    iris.to_csv(workdir / "data" / "few.csv", index=False)
    config = tuning(workdir)
    overrides = [
        "job.inputs={KIND: csv, path: data/few.csv, drop: [target]}",
        "job.targets={KIND: csv, path: data/few.csv, columns: [target]}",
        "job.model={KIND: sklearn, estimator: DecisionTreeClassifier, params: {random_state: 0}}",
        "job.metrics=[log_loss, roc_auc]",
        "job.searcher.space={max_depth: 'range(2, 4)'}",
        "job.searcher.n_trials=2",
    ]
    assert main(["run", config, *overrides, "job.splitter={KIND: kfold, n_splits: 5}"]) == 0
    trials = study_of(workdir).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert main(["run", config, *overrides, "job.splitter={KIND: stratified_kfold, n_splits: 5}"]) == 2
    err = capsys.readouterr().err
    assert "class 2 has 2: lower job.splitter.n_splits to 2 or fewer" in err and "Traceback" not in err
