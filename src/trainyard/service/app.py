"""The HTTP API of the job service (FastAPI): submit, follow, list, cancel and delete jobs.

Every endpoint but ``/health`` needs the bearer token when the service has one. A job config is
validated as the CLI validates a file (the same errors, with field paths), import paths refused,
and every file it names confined to the data roots; it is in the store before the answer is sent.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from trainyard import __version__
from trainyard.errors import ConfigurationError, ResourceNotFoundError, TrainyardError
from trainyard.service.answers import add_error_handlers, answers, submit_body, text_answers
from trainyard.service.page import add_page
from trainyard.service.store import FINAL, STATUSES, JobRecord, Store
from trainyard.service.submission import ORIGIN, validate_job
from trainyard.service.training_request import is_training_request, to_job

SUBMIT_KEYS = ("job", "max_runtime_s", "max_retries")
MAX_OFFSET = 1_000_000_000  # beyond what a 64-bit SQL integer holds a store would fail
KIND_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
KEY_PATTERN = r"^[!-~]{1,200}$"  # printable ASCII; the store keeps 200 characters
BEARER = HTTPBearer(auto_error=False, description="The service's token (--token or TRAINYARD_TOKEN).")


@dataclass
class ServiceConfig:
    """What the application needs: its store, where logs are, the data roots, the token."""

    store: Store
    logs: Path
    roots: list[Path] = field(default_factory=lambda: [Path.cwd()])
    token: str | None = None
    max_body_bytes: int = 1_000_000
    wake: Any = None  # called after a submit or a cancel: the pool looks at the store at once
    workers: int = 0
    mlflow_ui: str | None = None  # the MLflow UI the web page links runs to


class TransitionView(BaseModel):
    status: str
    step: str | None = Field(None, description="The step that started (a running job's transitions).")
    at: str = Field(description="When, ISO 8601 (UTC).")


class JobView(BaseModel):
    """A job as the service reports it."""

    id: str
    kind: str
    name: str | None = Field(None, description="The run's name, or else the experiment's (from its config).")
    status: str = Field(description="queued, running, completed, failed or cancelled.")
    message: str | None = None
    failure_reason: str | None = None
    error_type: str | None = Field(
        None, description="The error's type when it failed (ConfigurationError, ...)."
    )
    progress: dict[str, Any] = Field(
        default_factory=dict,
        description="step (the current one), steps_done; trials_done, trials_budget, best and percent for tuning.",
    )
    metrics: dict[str, float] = Field(default_factory=dict)
    run_id: str | None = Field(None, description="The MLflow run, once it exists.")
    artifacts_location: str | None = None
    tracking_uri: str | None = Field(None, description="The MLflow tracking store of its run.")
    model_version: str | None = Field(None, description="The registered model version, if any.")
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    attempts: int = 0
    max_runtime_s: float | None = None
    max_retries: int = 0
    transitions: list[TransitionView] | None = None
    config: dict[str, Any] | None = None


class JobList(BaseModel):
    total: int
    limit: int
    offset: int
    jobs: list[JobView]


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat()


def _tracking(config: dict[str, Any]) -> tuple[str | None, str]:
    """The job's name (its run's, else its experiment's) and its tracking store, from its config."""
    from trainyard.io.sources import without_credentials
    from trainyard.io.tracking import DEFAULT_TRACKING_URI, absolute_sqlite_uri

    job = config.get("job")
    section = job.get("mlflow") if isinstance(job, dict) else None
    section = section if isinstance(section, dict) else {}
    name = section.get("run_name") or section.get("experiment")
    uri = section.get("tracking_uri") or DEFAULT_TRACKING_URI
    return (str(name) if name else None), without_credentials(absolute_sqlite_uri(str(uri)))


def view(job: JobRecord, *, detail: bool = True) -> JobView:
    end = job.ended_at
    name, tracking_uri = _tracking(job.config)
    duration = None if job.started_at is None else (end or datetime.now(UTC).timestamp()) - job.started_at
    return JobView(
        id=job.id, kind=job.kind, name=name, status=job.status, message=job.message,
        failure_reason=job.failure_reason, error_type=job.error_type, progress=job.progress,
        metrics=job.metrics, run_id=job.run_id,
        artifacts_location=f"runs:/{job.run_id}" if job.run_id else None, tracking_uri=tracking_uri,
        model_version=job.model_version, created_at=_iso(job.created_at) or "",
        started_at=_iso(job.started_at), ended_at=_iso(end),
        duration_s=None if duration is None else round(duration, 3), attempts=job.attempts,
        max_runtime_s=job.max_runtime_s, max_retries=job.max_retries,
        transitions=[TransitionView(status=t.status, step=t.step, at=_iso(t.at) or "") for t in job.transitions]
        if detail else None,
        config=job.config if detail else None,
    )  # fmt: skip


def _json(job: JobView, status_code: int = 200) -> Response:
    """A job's answer, serialized by pydantic at once (FastAPI would validate the view again, in a
    thread of its pool, for an endpoint that returns the model)."""
    return Response(job.model_dump_json(), status_code=status_code, media_type="application/json")


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def create_app(config: ServiceConfig) -> FastAPI:
    """The application over ``config``'s store."""
    # The OpenAPI document needs the token like the rest; no pages that load scripts from elsewhere.
    app = FastAPI(
        title="Trainyard job service", version=__version__, openapi_url=None, docs_url=None, redoc_url=None
    )
    store = config.store

    async def authorized(  # async: no thread of the pool for a comparison
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> None:
        if config.token is None:
            return
        if credentials is None or not secrets.compare_digest(
            credentials.credentials.encode(), config.token.encode()
        ):
            raise _Unauthorized()

    add_error_handlers(app)

    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, error: _Unauthorized) -> JSONResponse:
        response = _error(401, "Unauthorized", "a valid bearer token is needed (Authorization: Bearer ...)")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(_TooLarge)
    async def too_large(request: Request, error: _TooLarge) -> JSONResponse:
        return _error(413, "ConfigurationError", str(error))

    @app.exception_handler(ConfigurationError)
    async def configuration_error(request: Request, error: ConfigurationError) -> JSONResponse:
        return _error(422, "ConfigurationError", str(error))

    @app.exception_handler(ResourceNotFoundError)
    async def not_found(request: Request, error: ResourceNotFoundError) -> JSONResponse:
        return _error(404, "ResourceNotFoundError", str(error))

    @app.exception_handler(_Conflict)
    async def conflict(request: Request, error: _Conflict) -> JSONResponse:
        return _error(409, "Conflict", str(error))

    @app.exception_handler(TrainyardError)
    async def trainyard_error(request: Request, error: TrainyardError) -> JSONResponse:
        return _error(400, type(error).__name__, str(error))

    guarded = [Depends(authorized)]

    def found(job_id: str) -> JobRecord:
        # an id no job can have is not looked up (a NUL in it is an error on PostgreSQL)
        job = store.get(job_id) if len(job_id) <= 64 and job_id.isprintable() else None
        if job is None:
            raise ResourceNotFoundError(f"no job {job_id!r} in the store")
        return job

    @app.get("/openapi.json", dependencies=guarded, include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", dependencies=guarded, responses=answers(401))
    def metrics() -> dict[str, int]:
        counts = store.counts()
        return {"queue_depth": counts["queued"], **counts, "workers": config.workers}

    @app.post(
        "/jobs",
        dependencies=guarded,
        status_code=202,
        response_model=JobView,
        responses={
            200: {"model": JobView, "description": "The job first submitted with this Idempotency-Key"},
            **answers(401, 413, 422),
        },
        openapi_extra={"requestBody": submit_body()},
    )
    async def submit(
        request: Request,
        idempotency_key: str | None = Header(
            None,
            alias="Idempotency-Key",
            pattern=KEY_PATTERN,
            description="A retried submit with the same key answers 200 and the first job.",
        ),
    ) -> Response:
        """Submit a job config ``{"job": {...}}`` (with optional ``max_runtime_s``, ``max_retries``), or a
        training request (``model_name``, ``data_source_config``, ``algorithm_config``, ...)."""
        body = await _read_limited(request, config.max_body_bytes)
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise ConfigurationError(f"{ORIGIN}: the body is not JSON: {error}") from None
        key = idempotency_key
        if key is not None and (first := await run_in_threadpool(store.by_idempotency_key, key)):
            return _json(view(first))
        if is_training_request(document):  # the training-job service's request, mapped onto a training job
            job_document, max_runtime_s = to_job(document, ORIGIN)
            max_retries = 0
        else:
            job_document, max_runtime_s, max_retries = _submission(document)

        def validate_and_commit() -> tuple[JobRecord, bool]:  # one trip to the thread pool
            job = validate_job(job_document, config.roots)
            return store.submit(
                job.KIND, job_document, idempotency_key=key, max_runtime_s=max_runtime_s,
                max_retries=max_retries,
            )  # fmt: skip

        record, created = await run_in_threadpool(validate_and_commit)
        answer = _json(view(record), status_code=202 if created else 200)
        if created and config.wake is not None:  # after the answer is made: it says what was committed
            config.wake()
        return answer

    @app.get("/jobs", dependencies=guarded, response_model=JobList, responses=answers(401, 422))
    def list_jobs(
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
        status: str | None = Query(
            None, description=f"One of {', '.join(STATUSES)}", json_schema_extra={"enum": list(STATUSES)}
        ),
        kind: str | None = Query(None, pattern=KIND_PATTERN, description="A job kind: training, ..."),
    ) -> JobList:
        if status is not None and status not in STATUSES:
            raise ConfigurationError(f"status={status!r}: expected one of {', '.join(STATUSES)}")
        jobs, total = store.page(limit=limit, offset=offset, status=status, kind=kind)
        return JobList(total=total, limit=limit, offset=offset, jobs=[view(j, detail=False) for j in jobs])

    @app.get("/jobs/{job_id}", dependencies=guarded, response_model=JobView, responses=answers(401, 404, 422))
    async def get_job(job_id: str) -> Response:
        return _json(view(await run_in_threadpool(found, job_id)))

    @app.post(
        "/jobs/{job_id}/cancel", dependencies=guarded, status_code=202, response_model=JobView,
        responses=answers(401, 404, 409, 422),
    )  # fmt: skip
    def cancel(job_id: str) -> JobView:
        """A queued job is cancelled at once; a running one is stopped (its MLflow run ends KILLED)."""
        job = found(job_id)
        if job.status in FINAL:
            raise _Conflict(f"job {job_id} is already {job.status}")
        after = store.request_cancel(job_id)
        if config.wake is not None:
            config.wake()
        return view(after or job)

    @app.delete(
        "/jobs/{job_id}", dependencies=guarded, status_code=204, responses=answers(401, 404, 409, 422)
    )
    def delete(job_id: str) -> Response:
        job = found(job_id)
        if job.status not in FINAL or not store.delete(job_id):
            raise _Conflict(
                f"job {job_id} is {job.status}: only a finished job can be deleted (cancel it first)"
            )
        (config.logs / f"{job_id}.log").unlink(missing_ok=True)
        return Response(status_code=204)

    @app.get(
        "/jobs/{job_id}/logs", dependencies=guarded,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **answers(401, 404, 422)},
    )  # fmt: skip
    def logs(job_id: str, follow: bool = False) -> Response:
        """The job's log; ``follow=true`` streams it until the job has ended and every line is sent."""
        found(job_id)
        path = config.logs / f"{job_id}.log"
        if not follow:
            return PlainTextResponse(path.read_text(errors="replace") if path.exists() else "")
        return StreamingResponse(_follow(path, job_id, store), media_type="text/plain")

    add_page(app, mlflow_ui=config.mlflow_ui, guarded=guarded)
    text_answers(app)
    return app


class _Unauthorized(Exception):
    pass


class _Conflict(Exception):
    pass


async def _follow(path: Path, job_id: str, store: Store, poll_s: float = 0.2) -> Any:
    """The file's content as it grows; after the job ends, what is left, then the end."""
    position = 0
    while True:
        job = await run_in_threadpool(store.get, job_id)
        ended = job is None or job.status in FINAL  # read the status first: lines written before it count
        if path.exists():
            with path.open("rb") as file:
                file.seek(position)
                chunk = file.read()
            if chunk:
                position += len(chunk)
                yield chunk
        if ended:
            return
        await asyncio.sleep(poll_s)


def _submission(document: Any) -> tuple[Any, float | None, int]:
    """The job document and the service's own options of a submission."""
    if not isinstance(document, dict):
        raise ConfigurationError(f"{ORIGIN}: expected a JSON object with a 'job' object")
    unknown = sorted(set(document) - set(SUBMIT_KEYS))
    if unknown:
        raise ConfigurationError(
            f"{ORIGIN}: {', '.join(unknown)}: unknown key; valid keys here: {', '.join(SUBMIT_KEYS)}"
        )
    runtime = document.get("max_runtime_s")
    if runtime is not None and (
        isinstance(runtime, bool) or not isinstance(runtime, int | float) or runtime <= 0
    ):
        raise ConfigurationError(f"{ORIGIN}: max_runtime_s = {runtime!r}: expected a number of seconds > 0")
    retries = document.get("max_retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise ConfigurationError(f"{ORIGIN}: max_retries = {retries!r}: expected an integer from 0 to 100")
    return {"job": document.get("job")}, None if runtime is None else float(runtime), retries


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(limit)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge(limit)
    return body


class _TooLarge(ConfigurationError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"{ORIGIN}: the body is larger than the service accepts ({limit} bytes)")
