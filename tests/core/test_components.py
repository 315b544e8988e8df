"""Each component kind on small real data: readers, schemas, splitters, models, metrics, signer."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris

from trainyard.core.metrics import Metric, class_labels
from trainyard.core.models import SklearnModel
from trainyard.core.schemas import DataSchemas, non_numbers
from trainyard.core.signers import InferSigner
from trainyard.core.splitters import (
    KFoldSplitter,
    StratifiedKFoldSplitter,
    TimeSeriesSplitter,
    TrainTestSplitter,
)
from trainyard.errors import ConfigurationError, DataAccessError, DataValidationError, TrainingJobError
from trainyard.io.readers import CsvReader, ParquetReader


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    return load_diabetes(as_frame=True, scaled=False).frame


@pytest.fixture
def files(tmp_path: Path, diabetes: pd.DataFrame) -> dict[str, Path]:
    csv, parquet = tmp_path / "d.csv", tmp_path / "d.parquet"
    diabetes.to_csv(csv, index=False)
    diabetes.to_parquet(parquet, index=False, row_group_size=100)
    return {"csv": csv, "parquet": parquet}


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_reader_selects_columns_and_limits_rows(files: dict[str, Path], kind: str) -> None:
    reader_class = CsvReader if kind == "csv" else ParquetReader
    data = reader_class(path=str(files[kind]), columns=["bmi", "age"], limit=150).read()
    assert list(data.columns) == ["bmi", "age"] and len(data) == 150
    assert len(reader_class(path=str(files[kind])).read()) == 442
    dropped = reader_class(path=str(files[kind]), drop=["target"]).read()
    assert "target" not in dropped.columns and len(dropped.columns) == 10


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_reader_errors_name_file_and_columns(files: dict[str, Path], kind: str) -> None:
    reader_class = CsvReader if kind == "csv" else ParquetReader
    with pytest.raises(DataAccessError, match="file not found: 'nope"):
        reader_class(path="nope." + kind).read()
    with pytest.raises(DataAccessError, match="has no column 'wheels'; its columns are: age, sex"):
        reader_class(path=str(files[kind]), columns=["age", "wheels"]).read()


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_reader_refuses_a_folder_an_empty_file_and_a_file_without_rows(
    files: dict[str, Path], diabetes: pd.DataFrame, kind: str
) -> None:
    reader_class = CsvReader if kind == "csv" else ParquetReader
    folder = files[kind].parent / "folder"
    folder.mkdir()
    with pytest.raises(
        DataAccessError, match=f"'{folder}' is a folder, expected a {reader_class.FORMAT} file"
    ):
        reader_class(path=str(folder)).check()
    empty = files[kind].with_name("empty." + kind)
    empty.touch()
    with pytest.raises(DataAccessError, match=r"is empty \(0 bytes\)"):
        reader_class(path=str(empty)).read()
    header_only = files[kind].with_name("header." + kind)
    if kind == "csv":
        header_only.write_text("age,sex,target\n")
    else:
        diabetes.head(0).to_parquet(header_only)
    with pytest.raises(DataAccessError, match=f"'{header_only}' has no rows, only its columns: age, sex"):
        reader_class(path=str(header_only)).read()


def test_csv_reader_refuses_a_file_of_blank_lines(tmp_path: Path) -> None:
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n")
    with pytest.raises(DataAccessError, match=r"is empty \(no header row\)"):
        CsvReader(path=str(blank)).read()


def test_parquet_reader_rejects_other_files(files: dict[str, Path]) -> None:
    with pytest.raises(DataAccessError, match=r"cannot read .* as parquet"):
        ParquetReader(path=str(files["csv"])).read()


def test_lineage_has_source_digest_schema_and_rows(files: dict[str, Path]) -> None:
    reader = CsvReader(path=str(files["csv"]), columns=["age", "bmi"])
    dataset = reader.lineage(reader.read(), "inputs")
    assert dataset.name == "inputs" and len(dataset.digest) == 8
    assert str(files["csv"].resolve()) in dataset.source.to_json()
    assert dataset.schema.input_names() == ["age", "bmi"]
    assert dataset.profile["num_rows"] == 442
    other = reader.lineage(reader.read().head(10), "inputs")
    assert other.digest != dataset.digest


def test_schema_accepts_valid_and_coerces(diabetes: pd.DataFrame) -> None:
    schemas = DataSchemas.model_validate(
        {"inputs": {"age": {"dtype": "int", "coerce": True, "ge": 0, "le": 120}, "sex": {"isin": [1.0, 2.0]}}}
    )
    checked = schemas.validate_inputs(diabetes[["age", "sex"]])
    assert checked["age"].dtype == np.int64


def test_schema_failure_lists_columns_and_first_rows(diabetes: pd.DataFrame) -> None:
    bad = diabetes[["age", "bmi"]].copy()
    bad.loc[3, "age"], bad.loc[5, "bmi"] = -4.0, None
    schemas = DataSchemas.model_validate({"inputs": {"age": {"ge": 0}, "bmi": {"dtype": "float"}}})
    with pytest.raises(DataValidationError) as caught:
        schemas.validate_inputs(bad)
    message = str(caught.value)
    assert "column 'age'" in message and "first failing rows [3]" in message
    assert "column 'bmi'" in message and "not_nullable" in message and "[5]" in message


def test_strict_schema_rejects_undeclared_columns(diabetes: pd.DataFrame) -> None:
    schemas = DataSchemas.model_validate({"inputs": {"age": {}}, "strict": True})
    with pytest.raises(DataValidationError, match="bmi"):
        schemas.validate_inputs(diabetes[["age", "bmi"]])


def test_non_numbers_are_the_values_pandas_cannot_parse_as_numbers() -> None:
    column = pd.Series(["1.5", None, "abc", "2", " 3 ", "?"], index=[10, 11, 12, 13, 14, 15])
    assert non_numbers(column).to_dict() == {2: "abc", 5: "?"}
    assert non_numbers(pd.Series([1.0, None])).empty
    assert non_numbers(pd.Series(pd.to_datetime(["2024-01-01"]))).empty


def test_train_test_split_sizes_seed_and_stratify() -> None:
    iris = load_iris(as_frame=True)
    inputs, targets = iris.data, iris.target.to_frame()
    splitter = TrainTestSplitter(test_size=0.2, seed=1, stratify=True)
    train, test = splitter.split(inputs, targets)
    assert len(train) == 120 and len(test) == 30 and not set(train) & set(test)
    assert targets.iloc[test, 0].value_counts().tolist() == [10, 10, 10]
    assert (splitter.split(inputs, targets)[1] == test).all()


def test_time_series_split_keeps_order(diabetes: pd.DataFrame) -> None:
    train, test = TimeSeriesSplitter(test_size=0.25).split(diabetes, diabetes[["target"]])
    assert train.max() < test.min() and len(test) == round(442 * 0.25) and len(train) + len(test) == 442


def test_time_series_folds_move_forward(diabetes: pd.DataFrame) -> None:
    folds = TimeSeriesSplitter(test_size=0.2, n_splits=4).folds(diabetes, diabetes[["target"]])
    assert len(folds) == 4
    for train, test in folds:
        assert train.max() + 1 == test.min() and len(test) == round(442 * 0.2)
    assert folds[-1][1].max() == 441
    with pytest.raises(ValueError, match="leaves no rows"):
        TimeSeriesSplitter(test_size=0.25, n_splits=4)


def test_kfold_and_stratified_kfold_cover_every_row_once() -> None:
    iris = load_iris(as_frame=True)
    inputs, targets = iris.data, iris.target.to_frame()
    for splitter in (KFoldSplitter(n_splits=5), StratifiedKFoldSplitter(n_splits=5)):
        folds = splitter.folds(inputs, targets)
        assert len(folds) == 5 and sorted(np.concatenate([test for _, test in folds])) == list(range(150))
    stratified = StratifiedKFoldSplitter(n_splits=5).folds(inputs, targets)
    assert all(targets.iloc[test, 0].value_counts().tolist() == [10, 10, 10] for _, test in stratified)
    with pytest.raises(ConfigurationError, match="cannot make folds"):
        KFoldSplitter(n_splits=5).folds(inputs.head(3), targets.head(3))


def test_stratified_folds_refuse_a_class_with_fewer_rows_than_folds() -> None:
    iris = load_iris(as_frame=True)
    keep = np.r_[0:100, 100:103]  # class 2 keeps 3 rows
    inputs, targets = iris.data.iloc[keep], iris.target.iloc[keep].to_frame()
    with pytest.raises(
        ConfigurationError,
        match=re.escape(
            "job.splitter: 5 stratified folds need at least 5 rows of each class of target column "
            "'target', and class 2 has 3: lower job.splitter.n_splits to 3 or fewer"
        ),
    ):
        StratifiedKFoldSplitter(n_splits=5).folds(inputs, targets)
    assert len(StratifiedKFoldSplitter(n_splits=3).folds(inputs, targets)) == 3
    with pytest.raises(ConfigurationError, match="class 2 has 1: a class of 1 row cannot be both"):
        StratifiedKFoldSplitter(n_splits=2).folds(inputs.head(101), targets.head(101))


def test_split_errors() -> None:
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(ConfigurationError, match="too few"):
        TimeSeriesSplitter(test_size=0.5).split(frame, frame)
    with pytest.raises(ConfigurationError, match=r"needs splitter\.shuffle"):
        TrainTestSplitter(stratify=True, shuffle=False).split(frame, frame)


def test_model_fits_with_categorical_columns_and_predicts(diabetes: pd.DataFrame) -> None:
    inputs, targets = diabetes.drop(columns="target"), diabetes[["target"]]
    for encoding in ("onehot", "ordinal"):
        model = SklearnModel(
            estimator="HistGradientBoostingRegressor",
            params={"max_iter": 20},
            categorical=["sex"],
            encoding=encoding,
        ).fit(inputs, targets)
        outputs = model.predict(inputs.head(7))
        assert list(outputs.columns) == ["prediction"] and len(outputs) == 7
        assert not model.is_classifier


def test_model_errors(diabetes: pd.DataFrame) -> None:
    inputs, targets = diabetes.drop(columns="target"), diabetes[["target"]]
    model = SklearnModel(estimator="Ridge")
    with pytest.raises(TrainingJobError, match="must be fitted"):
        model.predict(inputs)
    with pytest.raises(ConfigurationError, match="'colour', not among the inputs"):
        SklearnModel(estimator="Ridge", categorical=["colour"]).fit(inputs, targets)
    text = inputs.astype(object)
    text.loc[0, "bmi"] = "heavy"
    with pytest.raises(TrainingJobError, match="Ridge failed to fit"):
        SklearnModel(estimator="Ridge", impute=False).fit(text, targets)
    with pytest.raises(TrainingJobError, match="does not predict probabilities"):
        model.fit(inputs, targets).predict_proba(inputs)


def test_classifier_probabilities_and_metrics() -> None:
    iris = load_iris(as_frame=True)
    inputs, targets = iris.data, iris.target.to_frame()
    model = SklearnModel(estimator="LogisticRegression", params={"max_iter": 500}, scale=True).fit(
        inputs, targets
    )
    outputs, probas = model.predict(inputs), model.predict_proba(inputs)
    assert model.is_classifier and probas.shape == (150, 3)
    scores = {
        name: Metric(KIND=name).score(targets, outputs, probas) for name in ("accuracy", "f1", "roc_auc")
    }
    assert all(0.9 < value <= 1.0 for value in scores.values())
    assert 0 < Metric(KIND="log_loss").score(targets, outputs, probas) < 0.5
    with pytest.raises(ValueError, match="needs predicted probabilities"):
        Metric(KIND="roc_auc").score(targets, outputs)


def test_probability_metrics_score_rows_that_lack_a_class() -> None:
    iris = load_iris(as_frame=True)
    inputs, targets = iris.data, iris.target.to_frame()
    labels = class_labels(targets)
    assert labels == [0, 1, 2]
    model = SklearnModel(estimator="LogisticRegression", params={"max_iter": 500}, scale=True)
    model.fit(inputs.iloc[:100], targets.iloc[:100])  # never sees class 2
    probas = model.predict_proba(inputs, labels)
    assert probas.shape == (150, 3) and (probas[:, 2] == 0).all()
    full = SklearnModel(estimator="LogisticRegression", params={"max_iter": 500}, scale=True)
    full.fit(inputs, targets)
    test = slice(0, 100)  # rows of classes 0 and 1 only, scored with three columns
    outputs, probas = full.predict(inputs.iloc[test]), full.predict_proba(inputs.iloc[test], labels)
    for name in ("log_loss", "roc_auc"):
        score = Metric(KIND=name).score(targets.iloc[test], outputs, probas, labels)
        assert np.isfinite(score)
    # with every class present, as scikit-learn's own one-vs-rest AUC
    from sklearn.metrics import roc_auc_score

    probas = full.predict_proba(inputs, labels)
    expected = roc_auc_score(targets.iloc[:, 0], probas, multi_class="ovr")
    assert Metric(KIND="roc_auc").score(targets, full.predict(inputs), probas, labels) == expected


def test_regression_metrics_and_directions() -> None:
    truth = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0]})
    predicted = pd.DataFrame({"prediction": [1.0, 2.0, 3.0, 6.0]})
    assert Metric(KIND="mae").score(truth, predicted) == pytest.approx(0.5)
    assert Metric(KIND="rmse").score(truth, predicted) == pytest.approx(1.0)
    assert Metric(KIND="r2").score(truth, predicted) == pytest.approx(1 - 4 / 5)
    assert Metric(KIND="r2").direction == "maximize" and Metric(KIND="rmse").direction == "minimize"


def test_signer_describes_inputs_and_outputs(diabetes: pd.DataFrame) -> None:
    signature = InferSigner().sign(diabetes[["age", "bmi"]], pd.DataFrame({"prediction": [1.0]}))
    assert signature.inputs.input_names() == ["age", "bmi"]
    assert signature.outputs.input_names() == ["prediction"]


def test_binary_metrics_on_string_labels() -> None:
    truth = pd.DataFrame({"y": ["benign", "malignant", "benign", "malignant"]})
    predicted = pd.DataFrame({"prediction": ["benign", "malignant", "malignant", "malignant"]})
    assert Metric(KIND="f1").score(truth, predicted) == pytest.approx(0.7333, abs=1e-3), "macro by default"
    assert Metric(KIND="recall", pos_label="malignant").score(truth, predicted) == pytest.approx(1.0)
    assert Metric(KIND="precision", pos_label="malignant").score(truth, predicted) == pytest.approx(2 / 3)
