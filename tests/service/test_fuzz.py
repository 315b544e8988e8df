"""A fuzz run of the service's OpenAPI document (schemathesis): every operation, with the token.

The application runs in this process over a real SQLite store, called through ASGI as uvicorn would
call it (no workers: submitted jobs stay queued). Schemathesis generates valid and invalid requests
for each operation from the document and checks every answer: no 5xx, documented statuses, bodies
and headers as documented, invalid data refused, and so on (see ``EXCLUDED`` for the checks left out).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import HookContext
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from trainyard.service.app import ServiceConfig, create_app
from trainyard.service.store import Store

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 40  # per operation and generation mode: the run takes well under a minute on 2 cores

# schemathesis.pytest.from_fixture fails on pytest 9 (it reads Function._nodeid, gone): the schema is
# made at import, over a store in a folder of its own, removed when the tests' process exits.
FOLDER = Path(tempfile.mkdtemp(prefix="trainyard-fuzz-"))
STORE = Store(f"sqlite:///{FOLDER / 'jobs.db'}")
APP = create_app(ServiceConfig(store=STORE, logs=FOLDER / "logs", roots=[FOLDER], token=TOKEN))
# the token as the document's security scheme: schemathesis sends it, and leaves it out to see a 401
CONFIG = SchemathesisConfig.from_dict({"auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}}})
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG, headers=AUTH)


def _seed() -> tuple[list[str], list[str]]:
    """Jobs in every status (the finished ones with a log), so that ids the fuzzer sends find some:
    (every id, the finished ones')."""
    (FOLDER / "logs").mkdir()
    running = STORE.submit("training", {"job": {"mlflow": {"run_name": "<b>x</b>"}}})[0].id
    assert STORE.claim("fuzz").id == running  # type: ignore[union-attr]  # the oldest queued job
    done = []
    for status in ("completed", "failed", "cancelled"):
        job_id = STORE.submit("tuning", {"job": {}})[0].id
        assert STORE.claim("fuzz").id == job_id  # type: ignore[union-attr]
        assert STORE.finish(job_id, status, status, failure_reason="why" if status == "failed" else None)
        (FOLDER / "logs" / f"{job_id}.log").write_text("a line\n")
        done.append(job_id)
    queued = STORE.submit("training", {"job": {"KIND": "training"}})[0].id
    return [queued, running, *done], done


SEEDED, FINISHED = _seed()


@schema.hook
def flatmap_path_parameters(context: HookContext, path_parameters: dict[str, Any]) -> Any:
    """A job id is the generated one or a seeded job's (a finished one's for the logs: following an
    unfinished job's log waits for its end, and no worker runs here)."""
    if not path_parameters or "job_id" not in path_parameters:
        return st.just(path_parameters)
    seeded = FINISHED if context.operation and context.operation.path.endswith("/logs") else SEEDED
    return st.sampled_from([path_parameters, *({**path_parameters, "job_id": i} for i in seeded)])


# A schema-valid body need not be a valid job: POST /jobs answers 422 when the config names an
# estimator that is not registered or a file outside the data roots, which no JSON Schema can say.
EXCLUDED = {"POST /jobs": [positive_data_acceptance]}


@atexit.register
def _remove_the_folder() -> None:
    STORE.close()
    shutil.rmtree(FOLDER, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented_and_never_with_a_server_error(case: schemathesis.Case) -> None:
    response = case.call_and_validate(excluded_checks=EXCLUDED.get(case.operation.label, []))
    if case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
        assert response.status_code != 401, "a valid request was sent without the token"
