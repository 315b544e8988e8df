"""The whole lifecycle end to end, as docs/lifecycle.md tells it: prepare, watch a folder of training
configs, evaluate, promote, predict with @champion; a better config moves the champion; a restarted
watcher runs nothing again."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from tests.conftest import CONFS
from tests.watch.conftest import drop
from trainyard.cli import main
from trainyard.records import KIND_TAG

LIFECYCLE = CONFS / "lifecycle"
PREPARED = "data/diabetes_prepared.parquet"
NOT_INPUTS = ["patient_id", "visit_date", "target"]


def candidate(max_iter: int, max_depth: int) -> str:
    """The lifecycle's training config with these parameters (its hold-out is the same for all)."""
    text = (LIFECYCLE / "training.yaml").read_text()
    return text.replace("max_iter: 200", f"max_iter: {max_iter}").replace(
        "max_depth: 3", f"max_depth: {max_depth}"
    )


def training_runs(tracking_uri: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(tracking_uri)
    found = client.search_runs([client.get_experiment_by_name("lifecycle").experiment_id])
    return [run for run in found if run.data.tags.get(KIND_TAG) == "training"]


def independent_r2(tracking_uri: str) -> dict[str, float]:
    """r2 on the test rows of every training run, computed here without Trainyard: the hold-out
    (size 0.2, seed 42) redone with scikit-learn, each logged model loaded and scored."""
    client = mlflow.MlflowClient(tracking_uri)
    data = pd.read_parquet(PREPARED)
    _, test = train_test_split(np.arange(len(data)), test_size=round(len(data) * 0.2), random_state=42)
    rows = data.iloc[np.sort(test)]
    scores = {}
    for run in training_runs(tracking_uri):
        (model,) = client.search_logged_models(
            [run.info.experiment_id], f"source_run_id = '{run.info.run_id}'"
        )
        predicted = mlflow.sklearn.load_model(f"models:/{model.model_id}").predict(
            rows.drop(columns=NOT_INPUTS)
        )
        scores[run.info.run_id] = r2_score(rows["target"], predicted)
    return scores


def test_prepare_watch_evaluate_promote_predict_then_a_better_model_takes_over(
    workdir: Path, tracking_uri: str
) -> None:
    assert main(["run", str(CONFS / "preparation.yaml")]) == 0
    incoming = workdir / "incoming"
    incoming.mkdir()
    for depth in (1, 2, 3):  # good enough for the policy (r2_test >= 0.3), not the best: few rounds
        drop(incoming, f"depth-{depth}.yaml", candidate(max_iter=30, max_depth=depth))
    then = ["--then", str(LIFECYCLE / "evaluation.yaml"), str(LIFECYCLE / "promotion.yaml")]
    assert main(["watch", str(incoming), "--once", *then]) == 0

    client = mlflow.MlflowClient(tracking_uri)
    assert len(training_runs(tracking_uri)) == 3
    scores = independent_r2(tracking_uri)
    for run in training_runs(tracking_uri):
        assert run.data.metrics["r2_test"] == pytest.approx(scores[run.info.run_id])
    best = max(scores, key=scores.__getitem__)
    champion = client.get_model_version_by_alias("lifecycle", "champion")
    assert champion.run_id == best
    assert "trainyard.last_decision" in client.get_registered_model("lifecycle").tags

    assert main(["run", str(LIFECYCLE / "inference.yaml")]) == 0
    written = pd.read_csv(workdir / "predictions" / "lifecycle.csv")
    data = pd.read_parquet(PREPARED)
    own = mlflow.sklearn.load_model("models:/lifecycle@champion").predict(data.drop(columns=NOT_INPUTS))
    assert written["patient_id"].tolist() == data["patient_id"].tolist()
    np.testing.assert_allclose(written["prediction"].to_numpy(), own)

    drop(incoming, "strong.yaml", candidate(max_iter=200, max_depth=1))  # many rounds of stumps
    assert main(["watch", str(incoming), "--once", *then]) == 0
    scores = independent_r2(tracking_uri)
    assert len(scores) == 4
    newest = max(training_runs(tracking_uri), key=lambda run: run.info.start_time)
    assert max(scores, key=scores.__getitem__) == newest.info.run_id, "the strong config is the best"
    assert client.get_model_version_by_alias("lifecycle", "champion").run_id == newest.info.run_id
    assert client.get_model_version_by_alias("lifecycle", "previous-champion").version == champion.version

    assert main(["watch", str(incoming), "--once", *then]) == 0  # restarted: nothing new runs
    assert len(training_runs(tracking_uri)) == 4
