"""The evaluation job: scores on rows no candidate saw, logged into each candidate's own run."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from tests.conftest import CONFS, write_config
from tests.jobs.test_training import QUICKSTART
from trainyard.cli import main
from trainyard.records import ERROR_TAG, KIND_TAG

CLASSIFICATION = str(CONFS / "classification.yaml")
HOLDOUT = "job.holdout={size: 0.2, seed: 11}"
EVALUATION = """
job:
  KIND: evaluation
  mlflow: {experiment: EXPERIMENT}
  candidates: CANDIDATES
  plots: PLOTS
"""


def evaluation(
    workdir: Path, candidates: str = "{KIND: runs}", experiment: str = "quickstart", plots: bool = False
) -> str:
    """An evaluation config; without figures unless ``plots`` (drawing them is most of its time)."""
    text = EVALUATION.replace("CANDIDATES", candidates).replace("EXPERIMENT", experiment)
    text = text.replace("PLOTS", str(plots).lower())
    return write_config(workdir, text, "evaluation.yaml")


def runs(tracking_uri: str, kind: str, experiment: str = "quickstart") -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(tracking_uri)
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return [run for run in found if run.data.tags.get(KIND_TAG) == kind]


def train(*overrides: str) -> None:
    assert main(["run", QUICKSTART, HOLDOUT, *overrides]) == 0


def test_each_candidate_gets_test_scores_computed_on_rows_it_never_saw(
    workdir: Path, tracking_uri: str
) -> None:
    train("job.model.params.max_depth=2")
    train("job.model.params.max_depth=4")
    assert main(["run", evaluation(workdir, plots=True)]) == 0
    client = mlflow.MlflowClient(tracking_uri)
    data = pd.read_csv(workdir / "data" / "diabetes.csv")
    _, test = train_test_split(np.arange(len(data)), test_size=round(len(data) * 0.2), random_state=11)
    rows = data.iloc[np.sort(test)]
    expected = {}
    for run in runs(tracking_uri, "training"):
        run = client.get_run(run.info.run_id)
        (model,) = client.search_logged_models(
            [run.info.experiment_id], f"source_run_id = '{run.info.run_id}'"
        )
        predicted = mlflow.sklearn.load_model(f"models:/{model.model_id}").predict(
            rows.drop(columns=["target"])
        )
        expected[run.info.run_id] = r2_score(rows["target"], predicted)
        assert run.data.metrics["r2_test"] == pytest.approx(expected[run.info.run_id])
        assert {"rmse_test", "mae_test"} <= set(run.data.metrics)
        # linked to the logged model and to the test rows as a dataset input
        assert {m.key for m in client.get_logged_model(model.model_id).metrics} >= {"r2_test", "rmse_test"}
        contexts = {tag.value for d in run.inputs.dataset_inputs for tag in d.tags}
        assert "test" in contexts
        assert {"test_plots/predicted_vs_actual.png", "test_plots/residuals.png"} <= {
            a.path for a in client.list_artifacts(run.info.run_id, "test_plots")
        }
    (evaluated,) = runs(tracking_uri, "evaluation")
    assert evaluated.info.status == "FINISHED"
    table = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{evaluated.info.run_id}/comparison.csv"))
    assert table["r2_test"].tolist() == sorted(expected.values(), reverse=True)
    assert set(table["run_id"]) == set(expected) and (table["test_rows"] == len(rows)).all()


def test_a_second_evaluation_logs_no_second_value_unless_asked(workdir: Path, tracking_uri: str) -> None:
    train()
    config = evaluation(workdir)
    assert main(["run", config]) == 0
    assert main(["run", config]) == 0
    (trained,) = runs(tracking_uri, "training")
    client = mlflow.MlflowClient(tracking_uri)
    assert len(client.get_metric_history(trained.info.run_id, "r2_test")) == 1
    assert main(["run", config, "job.rescore=true"]) == 0
    assert len(client.get_metric_history(trained.info.run_id, "r2_test")) == 2


def test_a_run_without_a_hold_out_is_refused(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", QUICKSTART]) == 0
    assert main(["run", evaluation(workdir)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "recorded no test hold-out, so no rows can be proven unseen by its model" in err
    assert "train it with job.holdout set" in err and "Traceback" not in err
    (evaluated,) = runs(tracking_uri, "evaluation")
    assert evaluated.info.status == "FAILED" and "hold-out" in evaluated.data.tags[ERROR_TAG]
    (trained,) = runs(tracking_uri, "training")
    assert "r2_test" not in trained.data.metrics


def test_changed_data_is_refused(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    train()
    path = workdir / "data" / "diabetes.csv"
    data = pd.read_csv(path)
    data.loc[3, "bmi"] += 0.001
    data.to_csv(path, index=False)
    assert main(["run", evaluation(workdir)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "the data changed since run" in err and "evaluate it on the data it was trained on" in err


def test_registered_versions_by_alias_and_their_errors(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    train()  # registers diabetes v1 @challenger
    assert (
        main(["run", evaluation(workdir, "{KIND: registered, name: diabetes, aliases: [challenger]}")]) == 0
    )
    (evaluated,) = runs(tracking_uri, "evaluation")
    table = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{evaluated.info.run_id}/comparison.csv"))
    assert table[["registered", "version", "aliases"]].values.tolist() == [["diabetes", 1, "challenger"]]
    capsys.readouterr()
    assert main(["run", evaluation(workdir, "{KIND: registered, name: diabetis}")]) == 1
    assert "no registered model 'diabetis'. Did you mean diabetes?" in capsys.readouterr().err
    assert main(["run", evaluation(workdir, "{KIND: registered, name: diabetes, aliases: [champion]}")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "'diabetes' has no alias 'champion'; its aliases: @challenger (v1)" in err
    assert main(["run", evaluation(workdir, "{KIND: registered, name: diabetes, versions: [7]}")]) == 1
    assert "'diabetes' has no version 7; its versions: 1" in " ".join(capsys.readouterr().err.split())


def test_nothing_to_evaluate_is_named(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", evaluation(workdir, "{KIND: runs, experiment: nowhere}")]) == 1
    assert "job.candidates.experiment: no experiment 'nowhere'" in capsys.readouterr().err
    assert main(["run", evaluation(workdir)]) == 1
    assert "no run in experiment 'quickstart' matches" in " ".join(capsys.readouterr().err.split())


def test_a_classifier_gets_its_curves_and_confusion_matrix(workdir: Path, tracking_uri: str) -> None:
    assert main(["run", CLASSIFICATION, "job.holdout={size: 0.2, stratify: true}"]) == 0
    assert main(["run", evaluation(workdir, experiment="breast-cancer", plots=True)]) == 0
    (trained,) = runs(tracking_uri, "training", "breast-cancer")
    assert {"accuracy_test", "f1_test", "roc_auc_test", "log_loss_test"} <= set(trained.data.metrics)
    plots = {
        a.path for a in mlflow.MlflowClient(tracking_uri).list_artifacts(trained.info.run_id, "test_plots")
    }
    assert plots == {f"test_plots/{n}.png" for n in ("confusion_matrix", "roc_curve", "precision_recall")}


def test_test_rows_that_would_overlap_the_training_rows_are_refused(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hold-out recorded with another seed than the one the run used would call training rows
    "test": the recomputed rows do not match the recorded fingerprint, and nothing is scored."""
    import json

    from trainyard.records import HOLDOUT_TAG

    train()
    (trained,) = runs(tracking_uri, "training")
    client = mlflow.MlflowClient(tracking_uri)
    holdout = json.loads(trained.data.tags[HOLDOUT_TAG])
    client.set_tag(trained.info.run_id, HOLDOUT_TAG, json.dumps({**holdout, "seed": holdout["seed"] + 1}))
    assert main(["run", evaluation(workdir)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "are not those it set aside" in err and "would not be on unseen rows" in err
    assert "r2_test" not in client.get_run(trained.info.run_id).data.metrics


def test_a_run_trained_in_epochs_is_evaluated_with_its_saved_model_not_a_checkpoint(
    workdir: Path, tracking_uri: str
) -> None:
    iterative = str(CONFS / "iterative.yaml")
    overrides = ["job.holdout={size: 0.2, seed: 3}", "job.epochs.count=10", "job.epochs.checkpoint.every=2"]
    assert main(["run", iterative, *overrides]) == 0
    assert main(["run", evaluation(workdir, experiment="iterative")]) == 0
    (trained,) = runs(tracking_uri, "training", "iterative")
    client = mlflow.MlflowClient(tracking_uri)
    logged = client.search_logged_models(
        [trained.info.experiment_id], f"source_run_id = '{trained.info.run_id}'"
    )
    assert len(logged) > 1, "checkpoints and the saved model"
    (evaluated,) = runs(tracking_uri, "evaluation", "iterative")
    table = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{evaluated.info.run_id}/comparison.csv"))
    newest = max(logged, key=lambda model: model.creation_timestamp)
    assert table["model_uri"].tolist() == [f"models:/{newest.model_id}"] and newest.name != "checkpoint"
