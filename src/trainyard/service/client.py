"""A Python client of the job service (httpx, synchronous).

The service is at ``TRAINYARD_URL`` (default ``http://127.0.0.1:8000``) and the token comes from
``TRAINYARD_TOKEN`` unless given. An answer that is an error raises the matching Trainyard error:
ConfigurationError (422, 413, with the field paths), ResourceNotFoundError (404), ServiceError
(anything else: 401, 409, the service unreachable).
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from trainyard.errors import ConfigurationError, ResourceNotFoundError, TrainyardError

URL_ENV = "TRAINYARD_URL"
TOKEN_ENV = "TRAINYARD_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"
FINAL = frozenset({"completed", "failed", "cancelled"})


class ServiceError(TrainyardError):
    """The service refused a request (unauthorized, conflict) or could not be reached."""

    def __init__(self, message: str, status_code: int | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type


@dataclass(frozen=True)
class _Call:
    """One request of the API, as both clients send it."""

    method: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)


class _Calls:
    """The API's requests, built once for the synchronous and the asynchronous client."""

    @staticmethod
    def submit(
        document: dict[str, Any], idempotency_key: str | None, max_runtime_s: float | None, max_retries: int
    ) -> _Call:
        body: dict[str, Any] = {"job": document.get("job")}
        if max_runtime_s is not None:
            body["max_runtime_s"] = max_runtime_s
        if max_retries:
            body["max_retries"] = max_retries
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return _Call("POST", "/jobs", {"json": body, "headers": headers})

    @staticmethod
    def list(limit: int, offset: int, status: str | None, kind: str | None) -> _Call:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        params.update({key: value for key, value in {"status": status, "kind": kind}.items() if value})
        return _Call("GET", "/jobs", {"params": params})

    @staticmethod
    def follow(job_id: str) -> _Call:
        return _Call("GET", f"/jobs/{job_id}/logs", {"params": {"follow": "true"}, "timeout": None})


def _connection(url: str | None, token: str | None) -> tuple[str, dict[str, str]]:
    """The service's base URL and the request headers (the token from TRAINYARD_TOKEN unless given)."""
    base = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    token = token or os.environ.get(TOKEN_ENV) or None
    return base, ({"Authorization": f"Bearer {token}"} if token else {})


def _unreachable(url: str, error: httpx.HTTPError) -> ServiceError:
    return ServiceError(
        f"cannot reach the job service at {url}: {error} (is `trainyard serve` running? "
        f"{URL_ENV} says where it is)"
    )


def _still_running(job: dict[str, Any], timeout: float | None) -> ServiceError:
    return ServiceError(f"job {job['id']} is still {job['status']} after {timeout} s")


class JobServiceClient:
    """Submit, follow, list and cancel the jobs of one service."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.url, headers = _connection(url, token)
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JobServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, call: _Call) -> httpx.Response:
        try:
            response = self._http.request(call.method, call.path, **call.options)
        except httpx.HTTPError as error:
            raise _unreachable(self.url, error) from None
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    def _json(self, method: str, path: str) -> dict[str, Any]:
        return dict(self._request(_Call(method, path)).json())

    # -- the API ------------------------------------------------------------------------------------

    def submit(
        self,
        document: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        max_runtime_s: float | None = None,
        max_retries: int = 0,
    ) -> dict[str, Any]:
        """Submit a config document ``{"job": {...}}``; the job as queued (or the first one submitted
        with ``idempotency_key``)."""
        call = _Calls.submit(document, idempotency_key, max_runtime_s, max_retries)
        return dict(self._request(call).json())

    def status(self, job_id: str) -> dict[str, Any]:
        """The job: status, message, failure reason, progress, metrics, run id, transitions."""
        return self._json("GET", f"/jobs/{job_id}")

    def list(
        self, limit: int = 100, offset: int = 0, status: str | None = None, kind: str | None = None
    ) -> dict[str, Any]:
        """``{"total", "limit", "offset", "jobs"}``, newest first."""
        return dict(self._request(_Calls.list(limit, offset, status, kind)).json())

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel the job (queued: it never starts; running: it is stopped, its run ends KILLED)."""
        return self._json("POST", f"/jobs/{job_id}/cancel")

    def delete(self, job_id: str) -> None:
        """Remove a finished job and its log."""
        self._request(_Call("DELETE", f"/jobs/{job_id}"))

    def logs(self, job_id: str) -> str:
        """The job's log so far."""
        return self._request(_Call("GET", f"/jobs/{job_id}/logs")).text

    def follow(self, job_id: str) -> Iterator[str]:
        """The job's log as it is written, until the job ends (every line)."""
        call = _Calls.follow(job_id)
        try:
            with self._http.stream(call.method, call.path, **call.options) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_of(response)
                yield from response.iter_text()
        except httpx.HTTPError as error:
            raise ServiceError(f"the log stream from {self.url} broke: {error}") from None

    def wait(self, job_id: str, timeout: float | None = None, poll_s: float = 0.25) -> dict[str, Any]:
        """Poll until the job has ended; the job. A ServiceError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (job := self.status(job_id))["status"] not in FINAL:
            if deadline is not None and time.monotonic() > deadline:
                raise _still_running(job, timeout)
            time.sleep(poll_s)
        return job

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/health")

    def metrics(self) -> dict[str, Any]:
        return self._json("GET", "/metrics")

    # -- the names users of the training-job service know -------------------------------------------

    def submit_training_job(self, document: dict[str, Any], **options: Any) -> dict[str, Any]:
        """``submit`` under the name users of the training-job service know."""
        return self.submit(document, **options)

    def get_training_job_status(self, job_id: str) -> dict[str, Any]:
        """``status`` under the name users of the training-job service know."""
        return self.status(job_id)

    def list_training_jobs(self, limit: int = 100, offset: int = 0) -> builtins.list[dict[str, Any]]:
        """The jobs, newest first, as a list."""
        return builtins.list(self.list(limit=limit, offset=offset)["jobs"])


def _error_of(response: httpx.Response) -> TrainyardError:
    try:
        body = response.json()
        detail, kind = str(body.get("detail")), body.get("error")
    except ValueError:
        detail, kind = response.text, None
    if response.status_code in (413, 422) and kind == "ConfigurationError":
        return ConfigurationError(detail)
    if response.status_code == 404 and kind == "ResourceNotFoundError":
        return ResourceNotFoundError(detail)
    return ServiceError(
        f"the job service answered {response.status_code}: {detail}", response.status_code, kind
    )


class AsyncJobServiceClient:
    """The same client for asyncio (httpx.AsyncClient): ``await client.submit(...)`` and so on."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.url, headers = _connection(url, token)
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncJobServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _request(self, call: _Call) -> httpx.Response:
        try:
            response = await self._http.request(call.method, call.path, **call.options)
        except httpx.HTTPError as error:
            raise _unreachable(self.url, error) from None
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    async def _json(self, method: str, path: str) -> dict[str, Any]:
        return dict((await self._request(_Call(method, path))).json())

    async def submit(
        self,
        document: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        max_runtime_s: float | None = None,
        max_retries: int = 0,
    ) -> dict[str, Any]:
        """As ``JobServiceClient.submit``."""
        call = _Calls.submit(document, idempotency_key, max_runtime_s, max_retries)
        return dict((await self._request(call)).json())

    async def status(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/jobs/{job_id}")

    async def list(
        self, limit: int = 100, offset: int = 0, status: str | None = None, kind: str | None = None
    ) -> dict[str, Any]:
        return dict((await self._request(_Calls.list(limit, offset, status, kind))).json())

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/jobs/{job_id}/cancel")

    async def delete(self, job_id: str) -> None:
        await self._request(_Call("DELETE", f"/jobs/{job_id}"))

    async def logs(self, job_id: str) -> str:
        return (await self._request(_Call("GET", f"/jobs/{job_id}/logs"))).text

    async def follow(self, job_id: str) -> AsyncIterator[str]:
        """As ``JobServiceClient.follow``: the log as it is written, until the job ends."""
        call = _Calls.follow(job_id)
        try:
            async with self._http.stream(call.method, call.path, **call.options) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error_of(response)
                async for text in response.aiter_text():
                    yield text
        except httpx.HTTPError as error:
            raise ServiceError(f"the log stream from {self.url} broke: {error}") from None

    async def wait(self, job_id: str, timeout: float | None = None, poll_s: float = 0.25) -> dict[str, Any]:
        """As ``JobServiceClient.wait``, without blocking the event loop."""
        import asyncio

        deadline = None if timeout is None else time.monotonic() + timeout
        while (job := await self.status(job_id))["status"] not in FINAL:
            if deadline is not None and time.monotonic() > deadline:
                raise _still_running(job, timeout)
            await asyncio.sleep(poll_s)
        return job

    async def health(self) -> dict[str, Any]:
        return await self._json("GET", "/health")

    async def metrics(self) -> dict[str, Any]:
        return await self._json("GET", "/metrics")

    async def submit_training_job(self, document: dict[str, Any], **options: Any) -> dict[str, Any]:
        return await self.submit(document, **options)

    async def get_training_job_status(self, job_id: str) -> dict[str, Any]:
        return await self.status(job_id)

    async def list_training_jobs(self, limit: int = 100, offset: int = 0) -> builtins.list[dict[str, Any]]:
        return builtins.list((await self.list(limit=limit, offset=offset))["jobs"])
