"""The promotion job: the alias goes to the truly best candidate, by the policy, and every decision is kept."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from tests.conftest import write_config
from tests.jobs.test_evaluation import evaluation, runs, train
from trainyard.cli import main
from trainyard.records import ALIAS_MOVE_TAG, DECISION_TAG, DEMOTED_TAG, LAST_DECISION_TAG, PROMOTED_TAG

PROMOTION = """
job:
  KIND: promotion
  mlflow: {experiment: quickstart}
  registered: champions
  target: r2
"""


def promotion(workdir: Path, extra: str = "") -> str:
    return write_config(workdir, PROMOTION + extra, "promotion.yaml")


def scores(tracking_uri: str) -> dict[str, float]:
    """r2_test of every training run, by run id (as the evaluation logged them)."""
    return {run.info.run_id: run.data.metrics["r2_test"] for run in runs(tracking_uri, "training")}


def holder(tracking_uri: str, alias: str = "champion") -> mlflow.entities.model_registry.ModelVersion:
    return mlflow.MlflowClient(tracking_uri).get_model_version_by_alias("champions", alias)


def decision_of_last_run(tracking_uri: str) -> dict[str, object]:
    last = runs(tracking_uri, "promotion")[0]
    return json.loads(mlflow.artifacts.load_text(f"runs:/{last.info.run_id}/decision.json"))


def test_the_best_takes_the_alias_a_better_one_moves_it_and_reruns_change_nothing(
    workdir: Path, tracking_uri: str
) -> None:
    train("job.model.params.max_depth=1")
    train("job.model.params.max_depth=3")
    assert main(["run", evaluation(workdir, "{KIND: runs, kinds: [training]}")]) == 0
    config = promotion(workdir)
    assert main(["run", config]) == 0
    found = scores(tracking_uri)
    best = max(found, key=found.__getitem__)
    first = holder(tracking_uri)
    assert first.run_id == best
    client = mlflow.MlflowClient(tracking_uri)
    assert client.get_model_version("champions", first.version).tags[PROMOTED_TAG].startswith("@champion at ")
    record = decision_of_last_run(tracking_uri)
    assert record["action"] == "promote" and record["held_by"] is None
    assert record["winner"]["r2_test"] == pytest.approx(found[best])  # type: ignore[index]

    assert main(["run", config]) == 0  # nothing new: nothing changes, and the decision says so
    assert holder(tracking_uri).version == first.version
    assert decision_of_last_run(tracking_uri)["action"] == "keep"
    assert runs(tracking_uri, "promotion")[0].data.tags[DECISION_TAG] == "keep"

    train("job.model.params.max_depth=2", "job.model.params.max_iter=400")  # maybe better, maybe not
    assert main(["run", evaluation(workdir)]) == 0
    assert main(["run", config]) == 0
    found = scores(tracking_uri)
    best = max(found, key=found.__getitem__)
    assert holder(tracking_uri).run_id == best
    if best != first.run_id:  # moved: the former champion stays reachable
        assert holder(tracking_uri, "previous-champion").version == first.version
        assert DEMOTED_TAG in client.get_model_version("champions", first.version).tags
        tags = client.get_registered_model("champions").tags
        assert len([k for k in tags if k.startswith(f"{ALIAS_MOVE_TAG}.champion.")]) == 2
    assert json.loads(client.get_registered_model("champions").tags[LAST_DECISION_TAG])["alias"] == "champion"


def test_the_policy_keeps_or_fails_and_the_decision_is_recorded(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    train()
    assert main(["run", evaluation(workdir)]) == 0
    strict = "  policy: {thresholds: ['r2_test >= 0.99'], when_none_qualifies: WHAT}\n"
    assert main(["run", promotion(workdir, strict.replace("WHAT", "keep"))]) == 0
    assert decision_of_last_run(tracking_uri)["action"] == "keep"
    assert main(["run", promotion(workdir, strict.replace("WHAT", "fail"))]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "no candidate meets job.policy" in err and "r2_test >= 0.99" in err
    assert decision_of_last_run(tracking_uri)["unqualified"]  # recorded before the failure
    assert runs(tracking_uri, "promotion")[0].info.status == "FAILED"
    with pytest.raises(mlflow.exceptions.MlflowException):
        holder(tracking_uri)


def test_min_delta_keeps_a_champion_that_is_nearly_as_good(workdir: Path, tracking_uri: str) -> None:
    train("job.model.params.max_depth=1")
    assert main(["run", evaluation(workdir)]) == 0
    assert main(["run", promotion(workdir, "  candidates: {KIND: runs, newest: 1}\n")]) == 0
    first = holder(tracking_uri)
    train("job.model.params.max_depth=3")
    assert main(["run", evaluation(workdir)]) == 0
    assert main(["run", promotion(workdir, "  policy: {min_delta: 10.0}\n")]) == 0
    assert holder(tracking_uri).version == first.version
    assert "does not beat the champion" in str(decision_of_last_run(tracking_uri)["reason"])


def test_a_candidate_without_the_target_is_skipped_by_name(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    train()
    assert main(["run", promotion(workdir)]) == 0  # not evaluated yet: no r2_test
    (trained,) = runs(tracking_uri, "training")
    err = " ".join(capsys.readouterr().err.split())
    assert f"(run {trained.info.run_id}) has no r2_test: skipped (evaluate it first)" in err
    assert decision_of_last_run(tracking_uri)["action"] == "keep"


def test_dry_run_prints_the_decision_and_changes_nothing(
    workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    train()
    assert main(["run", evaluation(workdir)]) == 0
    capsys.readouterr()
    assert main(["run", promotion(workdir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out[out.index("{\n") :])
    assert printed["action"] == "promote" and printed["promotion_run"] is None
    assert runs(tracking_uri, "promotion") == []
    with pytest.raises(mlflow.exceptions.MlflowException):
        holder(tracking_uri)


def test_bad_promotion_configs_are_named(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", promotion(workdir), "job.target=my_score"]) == 2
    assert "target: 'my_score' is not a metric Trainyard knows" in capsys.readouterr().err
    assert (
        main(["run", promotion(workdir), "job.target=my_score", "job.direction=minimize", "--dry-run"]) == 1
    )
    assert "no run in experiment 'quickstart' matches" in capsys.readouterr().err  # valid: nothing to rank
    assert main(["run", promotion(workdir, "  policy: {thresholds: ['r2_test is big']}\n")]) == 2
    assert "'r2_test is big': expected 'METRIC OP NUMBER'" in capsys.readouterr().err
    assert main(["run", promotion(workdir), "job.previous_alias=champion"]) == 2
    assert "previous_alias: must differ from alias 'champion'" in capsys.readouterr().err
