"""A config never runs code it was not allowed to: every way in is refused, and named.

Import paths (``module:Class``) run the code of the module they name. They are refused unless the run
opts in (``--allow-import-paths`` or TRAINYARD_ALLOW_IMPORT_PATHS=1, never a key of the config), and
even then only a scikit-learn-compatible estimator class is taken.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import write_config
from trainyard.cli import main
from trainyard.config import load_layers, resolve, validate
from trainyard.errors import ConfigurationError

BASE = """
job:
  KIND: training
  inputs: {KIND: csv, path: data/diabetes.csv, columns: [age, bmi]}
  targets: {KIND: csv, path: data/diabetes.csv, columns: [target]}
  model: {KIND: sklearn, estimator: Ridge}
  metrics: [r2]
"""


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module on sys.path whose import (and whose classes' construction) leaves a marker file."""
    name = f"planted_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "side-effect-happened"
    (tmp_path / f"{name}.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "from sklearn.linear_model import Ridge\n"
        "class Estimator(Ridge):\n"
        "    pass\n"
        "class NoGetParams:\n"
        "    def __init__(self, **kwargs):\n"
        f"        Path({str(marker)!r} + '-instance').write_text('made')\n"
        "    def fit(self, X, y):\n"
        "        return self\n"
        "def function(**kwargs):\n"
        "    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


def run(config: str, *options: str) -> int:
    return main(["run", config, *options])


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_an_import_path_is_refused_without_importing_it(
    workdir: Path,
    planted: tuple[str, Path],
    capsys: pytest.CaptureFixture[str],
    dry_run: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRAINYARD_ALLOW_IMPORT_PATHS", raising=False)
    name, marker = planted
    config = write_config(workdir, BASE.replace("estimator: Ridge", f"estimator: '{name}:Estimator'"))
    assert run(config, *(["--dry-run"] if dry_run else [])) == 2
    error = capsys.readouterr().err
    assert not marker.exists(), "the module was imported"
    assert name not in sys.modules
    assert f"{config}: job.model.estimator = '{name}:Estimator'" in error
    assert "--allow-import-paths" in error and "TRAINYARD_ALLOW_IMPORT_PATHS=1" in error
    assert "Traceback" not in error
    assert not (workdir / "mlruns").exists(), "nothing was recorded"


def test_the_shell_command_of_the_issue_never_runs(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """os:system, with a command as its parameter: refused, and refused again when allowed."""
    config = write_config(
        workdir,
        BASE.replace(
            "{KIND: sklearn, estimator: Ridge}",
            "{KIND: sklearn, estimator: 'os:system', params: {command: 'touch pwned'}}",
        ),
    )
    for options in ([], ["--allow-import-paths"]):
        assert run(config, "--dry-run", *options) == 2
        assert not (workdir / "pwned").exists()
    error = capsys.readouterr().err
    assert "job.model.estimator = 'os:system'" in error
    assert "not a scikit-learn-compatible estimator" in error and "unexpected" not in error


def test_allowed_import_paths_take_an_estimator_class(
    workdir: Path, planted: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name, marker = planted
    config = write_config(workdir, BASE.replace("estimator: Ridge", f"estimator: '{name}:Estimator'"))
    assert run(config, "--allow-import-paths", "--dry-run", "job.model.params.alpha=2.0") == 0
    assert marker.exists()
    assert f"{name}:Estimator" in capsys.readouterr().out


def test_the_environment_variable_opts_in(
    workdir: Path,
    planted: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, _ = planted
    config = write_config(workdir, BASE.replace("estimator: Ridge", f"estimator: '{name}:Estimator'"))
    monkeypatch.setenv("TRAINYARD_ALLOW_IMPORT_PATHS", "1")
    assert run(config, "--dry-run") == 0
    monkeypatch.setenv("TRAINYARD_ALLOW_IMPORT_PATHS", "perhaps")
    assert run(config, "--dry-run") == 2
    assert "TRAINYARD_ALLOW_IMPORT_PATHS='perhaps': expected 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("NoGetParams", "the class NoGetParams, which lacks fit or get_params"),
        ("function", "got a function"),
        ("Missing", "has no class 'Missing'"),
    ],
)
def test_allowed_import_paths_take_only_estimator_classes_checked_before_any_instance(
    workdir: Path, planted: tuple[str, Path], capsys: pytest.CaptureFixture[str], target: str, expected: str
) -> None:
    name, marker = planted
    config = write_config(workdir, BASE.replace("estimator: Ridge", f"estimator: '{name}:{target}'"))
    assert run(config, "--allow-import-paths", "--dry-run") == 2
    error = capsys.readouterr().err
    assert f"job.model.estimator = '{name}:{target}'" in error and expected in error
    assert not Path(f"{marker}-instance").exists(), "an instance was made"


def test_a_config_cannot_allow_itself(workdir: Path, planted: tuple[str, Path]) -> None:
    name, marker = planted
    text = BASE.replace("estimator: Ridge", f"estimator: '{name}:Estimator'")
    config = write_config(workdir, text + "  allow_import_paths: true\n")
    assert run(config, "--dry-run") == 2
    assert not marker.exists()


@pytest.mark.parametrize(
    "where",
    [
        "  model: {KIND: sklearn, estimator: Ridge, params: {solver: {_target_: os.system}}}\n",
        "  model: {KIND: sklearn, estimator: BaggingRegressor, params: {estimator: {_target_: x:Y, _args_: [1]}}}\n",
        "  alerts: [{KIND: console}, {_target_: os.system}]\n",
        "  _target_: os.system\n",
    ],
    ids=["params", "nested-params", "list-item", "job"],
)
def test_hydra_target_keys_are_refused_anywhere(workdir: Path, where: str) -> None:
    text = BASE.replace("  model: {KIND: sklearn, estimator: Ridge}\n", "") + (
        "" if "model:" in where else "  model: {KIND: sklearn, estimator: Ridge}\n"
    )
    path = write_config(workdir, text + where)
    with pytest.raises(
        ConfigurationError, match=r"_target_: Trainyard never builds objects named in a config"
    ):
        validate(resolve(load_layers([path], [])), load_layers([path], []))


def test_a_target_key_given_as_an_override_names_the_overrides(workdir: Path) -> None:
    layers = load_layers([write_config(workdir, BASE)], ["job.model.params.alpha._target_=os.getcwd"])
    with pytest.raises(ConfigurationError, match=r"^command-line overrides: job.model.params.alpha._target_"):
        validate(resolve(layers), layers)


def test_python_tags_in_a_file_are_refused(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        workdir,
        BASE.replace("estimator: Ridge", "estimator: !!python/object/apply:os.system ['touch pwned']"),
    )
    assert run(config, "--dry-run", "--allow-import-paths") == 2
    error = capsys.readouterr().err
    assert f"{config}: invalid YAML at line 6" in error
    assert "!!python/object/apply:os.system: YAML tags that build Python objects are not accepted" in error
    assert not (workdir / "pwned").exists()


def test_python_tags_in_an_override_name_the_override(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(workdir, BASE)
    override = "job.model.params.alpha=!!python/name:os.system"
    assert run(config, "job.model.params.max_iter=3", override, "--dry-run") == 2
    error = capsys.readouterr().err
    assert f"error: override {override!r}: !!python/name:os.system: YAML tags that build" in error
    assert "ConstructorError" not in error and "unexpected" not in error


def test_params_that_are_not_plain_data_are_refused(workdir: Path) -> None:
    """Through the Python API (the job service will build configs from JSON, but a caller may not)."""
    layers = load_layers([write_config(workdir, BASE)], [])
    data = resolve(layers)
    data["job"]["model"]["params"] = {"alpha": 1.0, "solver": print, "tol": [0.1, {"deep": object()}]}
    with pytest.raises(ConfigurationError) as caught:
        validate(data, layers, allow_import_paths=True)
    message = str(caught.value)
    assert "job.model.params" in message
    assert "solver: expected plain data" in message and "got builtin_function_or_method" in message
