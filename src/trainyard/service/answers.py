"""The service's error answers, one shape for all, and how the OpenAPI document describes them.

Every error is ``{"error": type, "detail": text}``: the service's own (ConfigurationError 422,
ResourceNotFoundError 404, ...) and those FastAPI and Starlette would answer in shapes of their own
(a query parameter out of range, an unknown path, a method the path does not have; then ``Allow``
lists every method of the path, not only those of the first route that matched it).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from trainyard.service.submission import ORIGIN
from trainyard.service.training_request import TrainingJobRequest


class ErrorView(BaseModel):
    """An error answer."""

    error: str = Field(description="Its type: ConfigurationError, ResourceNotFoundError, Conflict, ...")
    detail: str = Field(description="What was wrong, naming the field and what was expected.")


DESCRIPTIONS = {
    401: "No valid bearer token (Authorization: Bearer ...)",
    404: "No such job",
    409: "The job's status does not allow it",
    413: "The body is larger than the service accepts",
    422: "The request is invalid: the message names the field and what was expected",
}


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error statuses (422 replaces FastAPI's own shape)."""
    return {code: {"model": ErrorView, "description": DESCRIPTIONS[code]} for code in codes}


def error(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    """Answer FastAPI's and Starlette's own errors in the service's shape."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, problem: RequestValidationError) -> JSONResponse:
        found = []
        for item in problem.errors():
            where = ".".join(str(part) for part in item.get("loc", ()))
            value = f" = {item['input']!r}" if "input" in item and item["input"] is not None else ""
            found.append(f"{where}{value}: {item.get('msg', 'invalid')}")
        return error(422, "ConfigurationError", f"{ORIGIN}: " + "; ".join(found))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, problem: HTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        if problem.status_code == 404:
            return error(404, "ResourceNotFoundError", f"{where}: no such endpoint")
        if problem.status_code == 405:
            allowed = allowed_methods(app, request)
            answer = error(
                405, "MethodNotAllowed", f"{where}: this path answers {', '.join(allowed) or 'nothing'}"
            )
            answer.headers["Allow"] = ", ".join(allowed)
            return answer
        answer = error(problem.status_code, "HTTPError", f"{where}: {problem.detail}")
        for name, value in (problem.headers or {}).items():
            answer.headers[name] = value
        return answer


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of ``request``'s path answers."""
    methods: set[str] = set()
    for route in app.router.routes:
        matched, _ = route.matches(request.scope)  # PARTIAL: the path matches, the method not
        if matched != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON Schema with its ``$defs`` put in place (they cannot be referred to from inside
    an OpenAPI document)."""
    definitions = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref", "")
            if reference.startswith("#/$defs/"):
                return walk(dict(definitions[reference.removeprefix("#/$defs/")]))
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    return dict(walk(schema))


def submit_body() -> dict[str, Any]:
    """The OpenAPI request body of ``POST /jobs``: a config document or a training request."""
    document = {
        "title": "JobSubmission",
        "type": "object",
        "required": ["job"],
        "additionalProperties": False,
        "properties": {
            "job": {
                "type": "object",
                "description": "A job config, as a YAML config file holds it under `job:` "
                "(`trainyard schema` prints its JSON Schema); validated as the CLI validates a file.",
            },
            "max_runtime_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "Stop and fail it after.",
            },
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 100, "default": 0},
        },
    }
    request = _inlined(TrainingJobRequest.model_json_schema())
    return {
        "required": True,
        "content": {"application/json": {"schema": {"anyOf": [document, request]}}},
    }


def text_answers(app: FastAPI) -> None:
    """Let operations whose answer is text (a log, the page) document only that media type for it:
    FastAPI adds an ``application/json`` they never send."""
    made = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for item in made()["paths"].values():
                for operation in item.values():
                    content = operation.get("responses", {}).get("200", {}).get("content", {})
                    if {"text/plain", "text/html"} & set(content):
                        content.pop("application/json", None)
        return app.openapi_schema or made()

    app.openapi = openapi  # type: ignore[method-assign]
