"""The web page of the job service: ``GET /`` and its script and style, plain files in ``static/``.

The page holds no data: it asks the JSON API for the jobs with the token the user typed (kept in
the tab's sessionStorage, sent as the Authorization header, never in a URL), and writes every value
that comes from a job as text, never as markup. A strict Content-Security-Policy allows only the
page's own script and style.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from trainyard import __version__
from trainyard.service.answers import answers

STATIC = Path(__file__).parent / "static"
ASSETS = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class PageSettings(BaseModel):
    mlflow_ui: str | None = Field(None, description="The MLflow UI runs link to (serve --mlflow-ui).")
    version: str


def add_page(app: FastAPI, *, mlflow_ui: str | None, guarded: list[Any]) -> None:
    """Add ``GET /``, its assets (open: they hold no data) and ``GET /page/settings`` (guarded)."""

    @app.get("/", response_class=Response, responses={200: {"content": {"text/html": {}}}})
    def page() -> Response:
        """The jobs page (HTML): it lists the jobs and follows their logs through this API."""
        return _file("index.html", "text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in ASSETS:
            return JSONResponse({"error": "ResourceNotFoundError", "detail": f"no asset {name!r}"}, 404)
        return _file(name, ASSETS[name])

    @app.get("/page/settings", dependencies=guarded, response_model=PageSettings, responses=answers(401))
    def settings() -> PageSettings:
        """What the page needs besides the jobs: where the MLflow UI is, if the service was told."""
        return PageSettings(mlflow_ui=mlflow_ui, version=__version__)


def _file(name: str, media_type: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=HEADERS)
