"""What the fuzz run (test_fuzz.py) found, each fixed, against a real server: one error shape for every
error, a 422 instead of a 500 for an offset past what the store holds, the right ``Allow`` header,
and an OpenAPI document that says what the service answers and how it is authenticated."""

from __future__ import annotations

import re

import pytest

from tests.service.conftest import Service, quick_job
from trainyard.errors import ConfigurationError


def test_an_offset_past_what_the_store_holds_is_refused_not_a_server_error(service: Service) -> None:
    with service.http() as http:
        answer = http.get("/jobs", params={"offset": 2**63})  # was a 500: SQLite's OverflowError
        assert answer.status_code == 422, answer.text
        assert answer.json() == {
            "error": "ConfigurationError",
            "detail": "request: query.offset = '9223372036854775808': "
            "Input should be less than or equal to 1000000000",
        }
        assert http.get("/jobs", params={"offset": 10**9}).json()["jobs"] == []


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/jobs", {"limit": 0}, "request: query.limit = '0': Input should be greater than or equal to 1"),
        ("/jobs", {"limit": "many"}, "request: query.limit = 'many': Input should be a valid integer"),
        ("/jobs", {"kind": "Training!"}, "request: query.kind = 'Training!': String should match pattern"),
        (
            "/jobs/x/logs",
            {"follow": "maybe"},
            "request: query.follow = 'maybe': Input should be a valid boolean",
        ),
    ],
)
def test_invalid_parameters_answer_in_the_services_error_shape(
    service: Service, path: str, params: dict, expected: str
) -> None:
    """FastAPI's own shape was ``{"detail": [...]}``: the client showed a list's repr."""
    with service.http() as http:
        answer = http.get(path, params=params)
        assert answer.status_code == 422 and answer.json()["error"] == "ConfigurationError"
        assert answer.json()["detail"].startswith(expected), answer.json()
    with (
        service.client() as client,
        pytest.raises(ConfigurationError, match=re.escape("request: query.limit = '0'")),
    ):
        client.list(limit=0)


def test_an_idempotency_key_the_store_cannot_keep_is_refused(service: Service) -> None:
    """A key over the store's 200 characters failed on PostgreSQL (a 500); now a 422, on every store."""
    with service.http() as http:
        before = http.get("/jobs").json()["total"]
        for key in ("k" * 201, "naïve-key", "two words"):
            answer = http.post("/jobs", json=quick_job(), headers={"Idempotency-Key": key.encode()})
            assert answer.status_code == 422, (key, answer.text)
            assert answer.json()["detail"].startswith("request: header.Idempotency-Key")
        assert http.get("/jobs").json()["total"] == before


def test_unknown_paths_and_methods_answer_in_the_services_shape_with_every_allowed_method(
    service: Service,
) -> None:
    with service.http() as http:
        missing = http.get("/nowhere")
        assert missing.status_code == 404 and missing.json() == {
            "error": "ResourceNotFoundError", "detail": "GET /nowhere: no such endpoint",
        }  # fmt: skip
        # Starlette named the methods of the first route of the path only: "GET" for /jobs
        for path, allowed in [("/jobs", "GET, POST"), ("/jobs/abc", "DELETE, GET"), ("/health", "GET")]:
            answer = http.request("PATCH", path)
            assert answer.status_code == 405 and answer.headers["allow"] == allowed, (path, answer.headers)
            assert answer.json() == {
                "error": "MethodNotAllowed", "detail": f"PATCH {path}: this path answers {allowed}",
            }  # fmt: skip
        assert http.get("/jobs/%00").status_code == 404  # never asked of the store


def test_the_openapi_document_names_the_error_answers_the_body_and_the_token(service: Service) -> None:
    with service.http() as http:
        document = http.get("/openapi.json").json()
    paths = document["paths"]
    error = {"$ref": "#/components/schemas/ErrorView"}
    expected = {
        ("/jobs", "post"): {"200", "202", "401", "413", "422"},
        ("/jobs", "get"): {"200", "401", "422"},
        ("/jobs/{job_id}", "get"): {"200", "401", "404", "422"},
        ("/jobs/{job_id}", "delete"): {"204", "401", "404", "409", "422"},
        ("/jobs/{job_id}/cancel", "post"): {"202", "401", "404", "409", "422"},
        ("/jobs/{job_id}/logs", "get"): {"200", "401", "404", "422"},
        ("/metrics", "get"): {"200", "401"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert set(responses) == statuses, (path, method, set(responses))
        for status in statuses - {"200", "202", "204"}:
            assert responses[status]["content"] == {"application/json": {"schema": error}}, (path, status)
        assert paths[path][method]["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/health"]["get"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert set(paths["/jobs/{job_id}/logs"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    body = paths["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert body[0]["required"] == ["job"] and "model_name" in body[1]["required"]
    assert "$ref" not in str(body)  # the training request's parts are in place
    kinds = {p["name"]: p for p in paths["/jobs"]["get"]["parameters"]}
    assert kinds["status"]["schema"]["enum"] == ["queued", "running", "completed", "failed", "cancelled"]
