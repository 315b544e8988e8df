"""A run's source: the config file it was run from, and the git commit of that file's repository.

MLflow on its own names the running script and its repository: for ``trainyard run`` that is
Trainyard's executable, and for a tuning job's parent run the writer module, wherever Trainyard is
installed. These tests run from a checkout of Trainyard that is itself a git repository (CI's clone).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CONFS, write_config
from tests.jobs.test_training import only_run
from tests.jobs.test_tuning import TPE, runs_of, tuning
from trainyard.cli import main
from trainyard.io.sources import GIT_BRANCH, GIT_COMMIT, git_tags, without_credentials

REMOTE = "https://someone:s3cret@example.com/team/project.git"


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repository(workdir: Path) -> str:
    """The working folder as a git repository with a remote, its configs committed; the commit."""
    _git(workdir, "init", "-q", "-b", "main")
    _git(workdir, "remote", "add", "origin", REMOTE)
    (workdir / "confs").mkdir()
    shutil.copy(CONFS / "quickstart.yaml", workdir / "confs" / "quickstart.yaml")
    write_config(workdir / "confs", "job: {register: null}\n", "no-register.yaml")
    _git(workdir, "add", "confs")
    _git(workdir, "commit", "-q", "-m", "configs")
    return _git(workdir, "rev-parse", "HEAD")


def test_a_run_names_its_config_file_and_the_commit_of_its_repository(
    workdir: Path, tracking_uri: str, repository: str
) -> None:
    assert main(["run", "confs/quickstart.yaml", "confs/no-register.yaml"]) == 0
    tags = only_run(tracking_uri).data.tags
    files = [str(workdir.resolve() / "confs" / name) for name in ("quickstart.yaml", "no-register.yaml")]
    assert tags["mlflow.source.name"] == files[-1], "the last file: the job's own, after shared ones"
    assert tags["trainyard.config_files"] == ", ".join(files)
    assert tags["mlflow.source.git.commit"] == repository
    assert tags["mlflow.source.git.branch"] == "main"
    assert tags["mlflow.source.git.repoURL"] == "https://example.com/team/project.git", "no credentials"


def test_the_tuning_parent_run_takes_git_from_the_config_not_from_its_writer(
    workdir: Path, tracking_uri: str, repository: str
) -> None:
    config = tuning(workdir, TPE.replace("n_trials: 6", "n_trials: 2"))
    assert main(["run", config]) == 0
    parent, children = runs_of(tracking_uri)
    assert len(children) == 2
    assert parent.data.tags["mlflow.source.name"] == str(Path(config).resolve())
    assert parent.data.tags["mlflow.source.git.commit"] == repository


def test_outside_a_repository_a_run_has_no_git_tags(workdir: Path, tracking_uri: str) -> None:
    """Not the commit of whatever repository Trainyard itself runs from."""
    config = write_config(workdir, (CONFS / "quickstart.yaml").read_text(), "quickstart.yaml")
    assert main(["run", config, "job.register=null"]) == 0
    tags = only_run(tracking_uri).data.tags
    assert tags["mlflow.source.name"] == str(Path(config).resolve())
    assert not [key for key in tags if key.startswith("mlflow.source.git")]


def test_a_resumed_study_records_the_source_of_its_latest_run(
    workdir: Path, tracking_uri: str, repository: str
) -> None:
    config = tuning(workdir, TPE.replace("n_trials: 6", "n_trials: 1"))
    assert main(["run", config]) == 0
    _git(workdir, "add", config)
    _git(workdir, "commit", "-q", "-m", "the tuning config")
    assert main(["run", config, "job.searcher.n_trials=2"]) == 0
    parent, _ = runs_of(tracking_uri)
    assert parent.data.tags["mlflow.source.git.commit"] == _git(workdir, "rev-parse", "HEAD") != repository
    shutil.rmtree(workdir / ".git")
    assert main(["run", config, "job.searcher.n_trials=3"]) == 0
    parent, children = runs_of(tracking_uri)
    assert len(children) == 3
    assert not [key for key in parent.data.tags if key.startswith("mlflow.source.git")]


@pytest.mark.parametrize(
    ("remote", "recorded"),
    [
        ("https://ghp_token@github.com/team/project.git", "https://github.com/team/project.git"),
        ("https://someone:s3cret@example.com:8443/project", "https://example.com:8443/project"),
        ("https://github.com/team/project.git", "https://github.com/team/project.git"),
        ("ssh://git:s3cret@example.com:22/project.git", "ssh://git@example.com:22/project.git"),
        ("git@github.com:team/project.git", "git@github.com:team/project.git"),
    ],
)
def test_a_remote_url_is_recorded_without_its_secrets(remote: str, recorded: str) -> None:
    assert without_credentials(remote) == recorded


def test_git_tags_of_repositories_in_odd_states(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("job: {}\n")
    _git(tmp_path, "init", "-q", "-b", "main")
    assert git_tags(str(config)) == {}, "no commit yet"
    _git(tmp_path, "add", "job.yaml")
    _git(tmp_path, "commit", "-q", "-m", "job")
    commit = _git(tmp_path, "rev-parse", "HEAD")
    assert git_tags(str(config)) == {GIT_COMMIT: commit, GIT_BRANCH: "main"}, "no remote: no URL"
    _git(tmp_path, "checkout", "-q", "--detach")
    assert git_tags(str(config)) == {GIT_COMMIT: commit}, "detached: no branch"
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert git_tags(str(config)) == {}, "no git command"
