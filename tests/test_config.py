"""Config loading: merging, overrides, interpolation, and every configuration error path."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CONFS, write_config
from trainyard.cli import main
from trainyard.config import _parse_overrides, load_settings
from trainyard.errors import ConfigurationError
from trainyard.jobs.training import TrainingJob

BASE = """
job:
  KIND: training
  inputs: {KIND: csv, path: data/diabetes.csv, columns: [age, bmi]}
  targets: {KIND: csv, path: data/diabetes.csv, columns: [target]}
  model: {KIND: sklearn, estimator: Ridge, params: {alpha: 1.0}}
  metrics: [r2]
"""


def error_of(paths: list[str], overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(paths, overrides or [])
    return str(caught.value)


def test_example_configs_are_valid() -> None:
    for path in sorted(CONFS.glob("*.yaml")):
        assert load_settings([str(path)]).job.KIND in {"training", "tuning", "inference"}, path


def test_files_merge_in_order_then_overrides(tmp_path: Path) -> None:
    base = write_config(tmp_path, BASE)
    more = write_config(tmp_path, "job: {model: {params: {alpha: 2.0}}, metrics: [r2, mae]}", "more.yaml")
    job = load_settings([base, more], ["job.model.params.alpha=3.5", "job.mlflow.experiment=x"]).job
    assert job.model.params == {"alpha": 3.5}
    assert [m.name for m in job.metrics] == ["r2", "mae"]
    assert job.mlflow.experiment == "x"


def test_environment_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:9/hook")
    path = write_config(tmp_path, BASE + "  alerts: [{KIND: webhook, url: '${oc.env:HOOK_URL}'}]\n")
    job = load_settings([path]).job
    assert job.alerts[0].url.get_secret_value() == "http://127.0.0.1:9/hook"
    assert "127.0.0.1" not in str(job.resolved_config()), "secrets are masked in the logged config"


def test_missing_environment_variable_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = write_config(tmp_path, BASE + "  alerts: [{KIND: webhook, url: '${oc.env:NOT_SET_ANYWHERE}'}]\n")
    message = error_of([path])
    assert path in message and "job.alerts" in message and "NOT_SET_ANYWHERE" in message


def test_bad_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = write_config(tmp_path, "job:\n  KIND: training\n  inputs: [unclosed\n")
    message = error_of([path])
    assert path in message and "invalid YAML" in message and "line" in message


def test_missing_file() -> None:
    assert "config file not found" in error_of(["nowhere/missing.yaml"])


def test_not_a_mapping(tmp_path: Path) -> None:
    assert "expected a mapping" in error_of([write_config(tmp_path, "- a\n- b\n")])


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, BASE.replace("metrics: [r2]", "metrics: [r2]\n  splitr: {KIND: train_test}")
    )
    message = error_of([path])
    assert f"{path}: job.splitr: unknown key (did you mean 'splitter'?)" in message


def test_unknown_nested_key_names_its_path_and_the_valid_keys(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, BASE.replace("path: data/diabetes.csv, columns: [age", "pth: x, columns: [age")
    )
    message = error_of([path])
    assert "job.inputs.pth: unknown key" in message and "path" in message


def test_wrong_type_names_field_value_and_expectation(tmp_path: Path) -> None:
    message = error_of(
        [write_config(tmp_path, BASE)], ["job.splitter.KIND=train_test", "job.splitter.test_size=big"]
    )
    assert "command-line overrides: job.splitter.test_size = 'big'" in message
    assert "valid number" in message


def test_origin_is_the_file_that_set_the_value(tmp_path: Path) -> None:
    base = write_config(tmp_path, BASE)
    more = write_config(tmp_path, "job: {splitter: {KIND: train_test, test_size: 7}}", "more.yaml")
    message = error_of([base, more])
    assert f"{more}: job.splitter.test_size = 7" in message


def test_unknown_estimator_lists_valid_names(tmp_path: Path) -> None:
    message = error_of([write_config(tmp_path, BASE)], ["job.model.estimator=RandomForestRegresor"])
    assert "job.model.estimator = 'RandomForestRegresor'" in message
    assert "Did you mean RandomForestRegressor" in message and "HistGradientBoostingRegressor" in message


def test_unknown_estimator_parameter_lists_valid_ones(tmp_path: Path) -> None:
    message = error_of([write_config(tmp_path, BASE)], ["job.model.params.alpah=1"])
    assert "job.model.params" in message and "'alpah'" in message and "alpha" in message


def test_invalid_parameter_value_says_what_is_expected(tmp_path: Path) -> None:
    message = error_of([write_config(tmp_path, BASE)], ["job.model.params.alpha=-3"])
    assert "job.model.params" in message and "alpha" in message and "range" in message


def test_unknown_kind_lists_the_kinds(tmp_path: Path) -> None:
    message = error_of([write_config(tmp_path, BASE)], ["job.inputs.KIND=excel"])
    assert (
        "command-line overrides: job.inputs.KIND = 'excel': unknown KIND; expected one of: csv, parquet"
        in message
    )


def test_missing_kind_lists_the_kinds(tmp_path: Path) -> None:
    message = error_of([write_config(tmp_path, BASE)], ["job.splitter.test_size=0.3"])
    assert (
        "job.splitter = {'test_size': 0.3}: missing KIND; expected one of: kfold, stratified_kfold, time_series, train_test"
        in message
    )


def test_unknown_alert_kind_in_a_list(tmp_path: Path) -> None:
    message = error_of([write_config(tmp_path, BASE + "  alerts: [{KIND: email}]\n")])
    assert (
        "job.alerts.0.KIND = 'email'" in message
        and "unknown KIND; expected one of: console, webhook" in message
    )


def test_missing_required_field(tmp_path: Path) -> None:
    message = error_of([write_config(tmp_path, BASE.replace("  metrics: [r2]\n", ""))])
    assert "job.metrics: required field is missing" in message


def test_bad_override_syntax(tmp_path: Path) -> None:
    assert "expected dotted.key=value" in error_of([write_config(tmp_path, BASE)], ["=3"])


def test_import_paths_only_when_allowed(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE)
    override = ["job.model.estimator=sklearn.linear_model:Ridge"]
    assert load_settings([path], override, allow_import_paths=True).job.model.estimator.endswith(":Ridge")
    with pytest.raises(ConfigurationError, match="import paths are not accepted"):
        load_settings([path], override, allow_import_paths=False)


FIELD_NAMES = set(TrainingJob.model_fields) | {"schema", "register"}


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(key=st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True).filter(lambda k: k not in FIELD_NAMES))
def test_any_unknown_job_key_is_rejected(tmp_path: Path, key: str) -> None:
    message = error_of([write_config(tmp_path, BASE)], [f"job.{key}=1"])
    assert f"job.{key}: unknown key" in message


def test_metric_error_points_at_metrics(tmp_path: Path) -> None:
    message = error_of([write_config(tmp_path, BASE)], ["job.metrics=[r2,accuracy]"])
    assert (
        "command-line overrides: job.metrics = ['r2', 'accuracy']: accuracy do not apply to a regressor (Ridge)"
        in message
    )


def test_probability_metrics_need_an_estimator_that_gives_them(tmp_path: Path) -> None:
    classification = str(CONFS / "classification.yaml")
    message = error_of(
        [classification], ["job.model.estimator=LinearSVC", "job.model.params={}", "job.model.scale=true"]
    )
    assert (
        "roc_auc, log_loss need predicted probabilities, and LinearSVC with these params gives none"
        in message
    )


TUNING_CONF = str(CONFS / "tuning.yaml")


def test_a_tilde_override_removes_a_key_the_files_set(capsys: pytest.CaptureFixture[str]) -> None:
    """Switching a component's KIND leaves the old kind's keys behind: Hydra's ~key drops them."""
    job = load_settings([TUNING_CONF], ["job.searcher.KIND=random", "~job.searcher.sampler"]).job
    assert job.searcher.KIND == "random"  # type: ignore[attr-defined]
    assert main(["run", TUNING_CONF, "job.searcher.KIND=random", "~job.searcher.sampler", "--dry-run"]) == 0
    assert "sampler" not in capsys.readouterr().out


def test_a_key_left_behind_by_an_override_is_blamed_on_its_file_with_the_way_out() -> None:
    message = error_of([TUNING_CONF], ["job.searcher.KIND=random"])
    assert f"{TUNING_CONF}: job.searcher.sampler: unknown key" in message
    assert "(to drop it on the command line: ~job.searcher.sampler)" in message
    assert "command-line overrides" not in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("~job.searcher.nothing", "~job.searcher.nothing: no such key to remove (the files do not set it)"),
        ("~", "override '~': expected ~dotted.key (to remove that key)"),
        ("~job.searcher.sampler=x", "expected ~dotted.key (to remove that key)"),
    ],
)
def test_bad_removals_are_named(override: str, expected: str) -> None:
    assert expected in error_of([TUNING_CONF], [override])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("job.metrics=[rmsee]", "job.metrics.0 = 'rmsee': unknown metric 'rmsee'. Did you mean rmse or mse?"),
        (
            "job.metrics=[RMSE]",
            "unknown metric 'RMSE'. Did you mean rmse? Valid names: r2, explained_variance",
        ),
        ("job.metrics=[r2_score]", "unknown metric 'r2_score'. Did you mean r2? Valid names"),
        ("job.metrics=[neg_root_mean_squared_error]", "Did you mean rmse? Valid names"),
        ("job.searcher.direction=minimize", "each metric has its own direction"),
    ],
)
def test_hints_for_near_misses(override: str, expected: str) -> None:
    message = error_of([TUNING_CONF], [override])
    assert expected in message and ".KIND" not in message


def test_an_unknown_metric_gets_its_did_you_mean_outside_the_cli_too() -> None:
    from pydantic import ValidationError

    from trainyard.core.metrics import Metric

    with pytest.raises(ValidationError, match=r"unknown metric 'mean_absolute_error'\. Did you mean mae"):
        Metric(KIND="mean_absolute_error")  # type: ignore[arg-type]


def test_hydras_sweep_list_on_the_command_line_is_a_choice() -> None:
    job = load_settings([TUNING_CONF], ["job.searcher.space.max_leaf_nodes=16,32,64"]).job
    assert job.searcher.dimensions["max_leaf_nodes"].choices == (16, 32, 64)  # type: ignore[attr-defined]


def test_a_kind_typo_is_blamed_on_the_file_even_when_an_override_sets_a_sibling(tmp_path: Path) -> None:
    typo = write_config(tmp_path, "job: {splitter: {KIND: kfoldd}}\n", "typo.yaml")
    message = error_of([TUNING_CONF, typo], ["job.splitter.n_splits=4"])
    assert f"{typo}: job.splitter.KIND = 'kfoldd': unknown KIND" in message


@pytest.mark.parametrize("value", ["sqlite:///:memory:", "C:", "a: b:"])
def test_an_override_ending_with_a_colon_is_text(value: str) -> None:
    layer = _parse_overrides([f"job.x={value}", "job.y={a: 1}", "job.z=[1, 2]"])
    assert layer.content.job.x == value
    assert dict(layer.content.job.y) == {"a": 1}  # braces still make a mapping
    assert list(layer.content.job.z) == [1, 2]


def test_overrides_ending_with_a_colon_keep_their_order() -> None:
    assert _parse_overrides(["job.x=a:", "job.x=b"]).content.job.x == "b"
    assert _parse_overrides(["job.x.y=a:", "job.x=5"]).content.job.x == 5
    assert _parse_overrides(["job.x=b", "job.x= it's:"]).content.job.x == "it's:"


SWEEPER_PASTED = """
job:
  KIND: tuning
  inputs: {KIND: csv, path: data/diabetes.csv, drop: [target]}
  targets: {KIND: csv, path: data/diabetes.csv, columns: [target]}
  model: {KIND: sklearn, estimator: Ridge}
  metrics: [rmse]
  searcher:
    KIND: optuna
    sampler: {seed: 55}
    study_name: "base-template"
    storage: null
    n_trials: 3
    params:
      alpha: interval(0.1, 1)
"""


def test_a_pasted_hydra_sweeper_block_is_pointed_at_trainyards_keys(tmp_path: Path) -> None:
    message = error_of([write_config(tmp_path, SWEEPER_PASTED)])
    assert "job.searcher.study_name: unknown key (Hydra's sweeper key: here it is job.study.name)" in message
    assert "job.searcher.storage: unknown key (Hydra's sweeper key: here it is job.study.storage)" in message
    assert "job.searcher.params: unknown key (Hydra's sweeper key: here it is job.searcher.space)" in message
    assert "job.searcher.sampler" not in message, "the sampler's KIND defaults to tpe"


def test_the_sampler_kind_defaults_to_tpe(tmp_path: Path) -> None:
    fixed = SWEEPER_PASTED.replace('    study_name: "base-template"\n    storage: null\n', "")
    job = load_settings([write_config(tmp_path, fixed.replace("    params:", "    space:"))]).job
    assert job.searcher.sampler_.KIND == "tpe" and job.searcher.sampler_.seed == 55


def test_a_job_kind_says_what_it_wants_started_before_validation() -> None:
    """The CLI asks the kind a config names, with no KIND name of its own; a wrong kind starts nothing."""
    from contextlib import nullcontext

    from trainyard.jobs.training import TrainingJob
    from trainyard.jobs.tuning import TuningJob
    from trainyard.settings import job_class

    assert job_class("tuning") is TuningJob
    assert job_class("training") is TrainingJob
    assert job_class("trainig") is None
    assert job_class(["tuning"]) is None
    assert isinstance(TrainingJob.started_early(), nullcontext)
    with TuningJob.started_early():  # the writer process, stopped at the end when no job took it
        from trainyard.tuning import writer_process

        assert len(writer_process._prestarted) == 1
    assert writer_process._prestarted == []
