"""Job.observe: a job tells its steps, its run id and its trials as they happen (the service's progress)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CONFS
from trainyard.config import load_settings
from trainyard.errors import DataAccessError


def test_a_training_job_tells_each_step_and_its_run(workdir: Path, tracking_uri: str) -> None:
    job = load_settings(
        [str(CONFS / "quickstart.yaml")], ["job.register=null", "job.model.params.max_iter=10"]
    ).job
    events: list[tuple[str, dict[str, Any]]] = []
    job.observe(lambda event, details: events.append((event, details)))
    with job:
        result = job.run()
    runs = [details["run_id"] for event, details in events if event == "run"]
    assert runs == [result["run"].info.run_id]
    steps = [(d["title"], d["state"]) for event, d in events if event == "step"]
    assert steps[:2] == [(steps[0][0], "started"), (steps[0][0], "ended")]
    assert ("fit", "started") in steps and ("fit", "ended") in steps
    assert all(state in {"started", "ended"} for _, state in steps) and len(steps) % 2 == 0


def test_a_failed_step_is_told_and_an_observer_error_is_only_logged(workdir: Path, tracking_uri: str) -> None:
    job = load_settings([str(CONFS / "quickstart.yaml")], ["job.register=null"]).job
    told: list[tuple[str, str]] = []

    def observer(event: str, details: dict[str, Any]) -> None:
        if event == "step":
            told.append((details["title"], details["state"]))
        raise RuntimeError("observer broke")

    job.observe(observer)
    with pytest.raises(DataAccessError, match="boom"), job.step("read") as _:
        raise DataAccessError("boom")
    assert told == [("read", "started"), ("read", "failed")]
