"""``trainyard watch DIR --once``: each content runs once, failures are reported, claims are shared."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from tests.conftest import CONFS
from tests.watch.conftest import EXPERIMENT, drop, hash_of, quick_config, runs, runs_by_hash
from trainyard.cli import main
from trainyard.records import CONFIG_FILES_TAG, WATCH_CONTENT_HASH_TAG, WATCH_LAUNCH_TAG, process_token
from trainyard.watch.ledger import Ledger


def test_each_config_runs_once_and_an_edited_one_runs_again(
    incoming: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = [drop(incoming, f"hgb-{n}.yaml", quick_config(n)) for n in (10, 20, 30)]
    assert main(["watch", str(incoming), "--once"]) == 0
    err = capsys.readouterr().err
    assert err.count("picked up") == 3 and err.count("started") == 3 and err.count("done") == 3, err
    assert re.search(r"done hgb-10\.yaml in \d+\.\d s: run [0-9a-f]{32}", err), err
    found = runs(tracking_uri)
    assert len(found) == 3 and {run.info.status for run in found} == {"FINISHED"}
    by_file = {Path(run.data.tags[CONFIG_FILES_TAG]).name: run for run in found}
    entries = Ledger(incoming).entries()
    for config in configs:
        run = by_file[config.name]
        assert run.data.tags[WATCH_CONTENT_HASH_TAG] == hash_of(config)  # the file's sha256, as tagged
        assert len(run.data.tags[WATCH_LAUNCH_TAG]) == 32
        entry = entries[hash_of(config)]
        assert (entry.state, entry.file, entry.run_id) == ("done", config.name, run.info.run_id)
        assert f"MLflow run {run.info.run_id}" in (incoming / entry.log).read_text()  # the job's output

    assert main(["watch", str(incoming), "--once"]) == 0  # a watcher restarted: nothing new
    assert "picked up" not in capsys.readouterr().err
    assert len(runs(tracking_uri)) == 3

    drop(incoming, "hgb-20.yaml", quick_config(25))  # new content
    drop(incoming, "copy.yaml", quick_config(30))  # the content of hgb-30.yaml, already run
    assert main(["watch", str(incoming), "--once"]) == 0
    err = capsys.readouterr().err
    assert err.count("picked up") == 1 and "picked up hgb-20.yaml" in err, err
    assert "skipped copy.yaml: same content as hgb-30.yaml (done, run " in err
    assert sorted(len(ids) for ids in runs_by_hash(tracking_uri).values()) == [1, 1, 1, 1]


def test_a_failing_config_is_reported_and_the_others_run(
    incoming: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    drop(incoming, "broken.yaml", "job:\n  KIND: training\n  inputs: [unclosed\n")
    drop(incoming, "bad-data.yaml", quick_config(10).replace("le: 120", "le: 50"))  # fails in its run
    good = drop(incoming, "good.yaml", quick_config(10))
    assert main(["watch", str(incoming), "--once"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"failed broken\.yaml after \d+\.\d s: .*broken\.yaml: invalid YAML at line 4", err), err
    assert re.search(
        r"failed bad-data\.yaml after .* \(run [0-9a-f]{32}\): inputs do not match their schema", err
    ), err
    assert "done good.yaml" in err and "Traceback" not in err
    entries = Ledger(incoming).entries()
    assert entries[hash_of(good)].state == "done"
    in_run = entries[hash_of(incoming / "bad-data.yaml")]
    assert in_run.state == "failed" and in_run.run_id is not None
    assert mlflow.MlflowClient(tracking_uri).get_run(in_run.run_id).info.status == "FAILED"

    assert main(["watch", str(incoming), "--once"]) == 0, "a failed content is not run again"
    assert "picked up" not in capsys.readouterr().err

    assert main(["watch", str(incoming), "--status"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"good\.yaml\s+│ done\s+│ run [0-9a-f]{32}", out), out
    assert re.search(r"bad-data\.yaml\s+│ failed\s+│ inputs do not match their schema", out), out
    assert re.search(r"broken\.yaml\s+│ failed\s+│ .*invalid YAML", out), out

    drop(incoming, "broken.yaml", quick_config(15))  # corrected: new content, to run
    assert main(["watch", str(incoming), "--status"]) == 0
    assert re.search(r"broken\.yaml\s+│ pending\s+│ changed since its last run", capsys.readouterr().out)


def test_status_shows_pending_running_and_a_gone_watcher(
    incoming: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["watch", str(incoming), "--status"]) == 0
    assert "no *.yaml or *.yml file in the folder" in capsys.readouterr().out
    waiting, busy, orphaned = (drop(incoming, f"{n}.yaml", quick_config(n)) for n in (11, 12, 13))
    drop(incoming, ".draft.yaml", "not a config")  # hidden: not watched
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        Ledger(incoming, token=process_token(sleeper.pid)).claim(hash_of(busy), busy.name, "busy.log")
        Ledger(incoming, token=_gone_watcher()).claim(hash_of(orphaned), orphaned.name, "gone.log")
        assert main(["watch", str(incoming), "--status"]) == 0
    finally:
        sleeper.kill()
    out = capsys.readouterr().out
    assert re.search(rf"{waiting.name}\s+│ pending\s+│ waits for a watcher", out), out
    assert re.search(rf"{busy.name}\s+│ running\s+│ watcher pid {sleeper.pid}", out), out
    assert re.search(rf"{orphaned.name}\s+│ running\s+│ its watcher \(pid \d+\) is gone", out), out
    assert ".draft.yaml" not in out


def test_a_config_running_in_a_live_watcher_is_left_to_it(
    incoming: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = drop(incoming, "busy.yaml", quick_config(10))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        Ledger(incoming, token=process_token(sleeper.pid)).claim(hash_of(config), config.name, "busy.log")
        assert main(["watch", str(incoming), "--once"]) == 0
    finally:
        sleeper.kill()
    assert f"busy.yaml runs in another watcher (pid {sleeper.pid})" in capsys.readouterr().err
    assert runs(tracking_uri) == []


def test_the_claim_of_a_watcher_that_is_gone_is_taken_over(
    incoming: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = drop(incoming, "orphan.yaml", quick_config(10))
    digest = hash_of(config)
    gone = Ledger(incoming, token=_gone_watcher())
    assert gone.claim(digest, config.name, "gone.log") is not None
    assert main(["watch", str(incoming), "--once"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"taking over orphan\.yaml: its watcher \(pid \d+\) is gone", err), err
    assert "done orphan.yaml" in err
    (run,) = runs(tracking_uri)
    assert Ledger(incoming).entries()[digest].run_id == run.info.run_id

    # A watcher killed after its job had finished: the run is found, the config not run again.
    db = sqlite3.connect(incoming / ".trainyard-watch" / "ledger.sqlite")
    with db:
        db.execute("UPDATE contents SET state = 'running', watcher = ?, run_id = NULL", (_gone_watcher(),))
    db.close()
    assert main(["watch", str(incoming), "--once"]) == 0
    err = capsys.readouterr().err
    assert f"done orphan.yaml: its run {run.info.run_id} had finished before its watcher was gone" in err
    assert len(runs(tracking_uri)) == 1
    assert Ledger(incoming).entries()[digest].run_id == run.info.run_id


def test_two_watchers_at_once_never_run_one_config_twice(incoming: Path, tracking_uri: str) -> None:
    configs = [drop(incoming, f"hgb-{n}.yaml", quick_config(n)) for n in (10, 20, 30, 40)]
    command = [sys.executable, "-m", "trainyard.cli", "watch", str(incoming), "--once"]
    watchers = [
        subprocess.Popen(command, cwd=incoming.parent, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [watcher.communicate(timeout=240)[1] for watcher in watchers]
    assert [watcher.returncode for watcher in watchers] == [0, 0], outputs
    started = [line for output in outputs for line in output.splitlines() if " started " in line]
    assert len(started) == 4, outputs
    by_hash = runs_by_hash(tracking_uri)
    assert {digest: len(ids) for digest, ids in by_hash.items()} == {hash_of(c): 1 for c in configs}
    assert {entry.state for entry in Ledger(incoming).entries().values()} == {"done"}


def test_the_watcher_never_allows_import_paths(
    incoming: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Configs in a watched folder may be written by others: the opt-in of the environment is ignored."""
    monkeypatch.setenv("TRAINYARD_ALLOW_IMPORT_PATHS", "1")
    text = quick_config(10).replace("estimator: HistGradientBoostingRegressor", "estimator: os:System")
    drop(incoming, "planted.yaml", text.replace("    categorical: [sex]\n", ""))
    assert main(["watch", str(incoming), "--once"]) == 1
    err = capsys.readouterr().err
    assert "failed planted.yaml" in err and "import path" in err and "--allow-import-paths" in err, err
    assert runs(tracking_uri) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing"], "trainyard watch missing: folder not found"),
        (["incoming/a.yaml"], "not a folder"),
        (["incoming", "--every", "10m"], "--every 10m: it runs the --then jobs on a schedule; name them"),
        (["incoming", "--once", "--every", "10m", "--then", "then.yaml"], "drop --once"),
        (["incoming", "--every", "10 minutes", "--then", "then.yaml"], "expected a duration such as 30s"),
        (["incoming", "--every", "0s", "--then", "then.yaml"], "must be more than 0 s"),
        (["incoming", "--every", "61 * * * *", "--then", "then.yaml"], "not a cron expression (Bad minute)"),
        (["incoming", "--then", "nowhere.yaml"], "--then nowhere.yaml: config file not found"),
        (["incoming", "--then", "incoming/a.yaml"], "it is in the watched folder"),
        (["incoming", "--status", "--once"], "--status prints the state"),
    ],
)
def test_wrong_arguments_are_named(
    incoming: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    drop(incoming, "a.yaml", quick_config(10))
    (incoming.parent / "then.yaml").write_text(quick_config(10))
    assert main(["watch", *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not (incoming / ".trainyard-watch").exists()


def test_a_ledger_that_is_not_sqlite_is_named(incoming: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (incoming / ".trainyard-watch").mkdir()
    (incoming / ".trainyard-watch" / "ledger.sqlite").write_text("not a database" * 100)
    drop(incoming, "a.yaml", quick_config(10))
    assert main(["watch", str(incoming), "--once"]) == 1
    err = capsys.readouterr().err
    assert (
        "ledger.sqlite: cannot use the watch ledger (file is not a database)" in err
        and "Traceback" not in err
    )


def test_the_then_jobs_run_after_a_batch_that_ran_one(
    incoming: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    then = incoming.parent / "then.yaml"
    then.write_text(quick_config(10, experiment="follow-up"))
    assert main(["watch", str(incoming), "--once", "--then", str(then)]) == 0
    assert "then" not in capsys.readouterr().err.replace("--then", ""), "nothing ran: no follow-up"
    drop(incoming, "a.yaml", quick_config(10))
    assert main(["watch", str(incoming), "--once", "--then", str(then)]) == 0
    err = capsys.readouterr().err
    assert (
        err.index("done a.yaml") < err.index("started then then.yaml") < err.index("done then then.yaml")
    ), err
    (follow_up,) = runs(tracking_uri, "follow-up")
    assert re.search(rf"done then then\.yaml in \d+\.\d s: run {follow_up.info.run_id}", err)
    assert WATCH_CONTENT_HASH_TAG not in follow_up.data.tags, "not a watched config"
    assert len(runs(tracking_uri, EXPERIMENT)) == 1


def _gone_watcher() -> str:
    """The worker token of a watcher that is gone: this process's pid, at another start time."""
    host, pid, _ = process_token(os.getpid()).split(":")
    return f"{host}:{pid}:0"


def test_an_edited_tuning_config_tops_up_its_study_in_the_same_run(
    incoming: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tuning job resumes its study's parent run: the run gets the new content's tags too."""
    text = (CONFS / "tuning.yaml").read_text().replace("max_iter: 100", "max_iter: 10")
    tuning = drop(incoming, "tuning.yaml", text.replace("n_trials: 30", "n_trials: 2"))
    assert main(["watch", str(incoming), "--once"]) == 0
    first = Ledger(incoming).entries()[hash_of(tuning)].run_id
    drop(incoming, "tuning.yaml", text.replace("n_trials: 30", "n_trials: 3"))  # one more trial
    assert main(["watch", str(incoming), "--once"]) == 0
    assert "done tuning.yaml in" in capsys.readouterr().err
    again = Ledger(incoming).entries()[hash_of(tuning)]
    assert first is not None and again.run_id == first
    parent = mlflow.MlflowClient(tracking_uri).get_run(first)
    assert parent.data.tags[WATCH_CONTENT_HASH_TAG] == hash_of(tuning), "the latest content's"
