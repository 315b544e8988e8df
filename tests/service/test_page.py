"""The jobs page (``GET /``) in headless Chromium against real services, and a real MLflow UI.

Chromium is Debian's (``/usr/bin/chromium``, or ``TRAINYARD_CHROMIUM``), driven by Playwright's
Python package; every request the browser makes to anything but 127.0.0.1 is refused.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, expect, sync_playwright

from tests.service.conftest import TOKEN, Service, free_port, quick_job, service_folder, start_service

CHROMIUM_ENV = "TRAINYARD_CHROMIUM"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
SLOW_MS = 120_000  # a job's end, on a shared machine


def chromium_path() -> str:
    """The Chromium to drive; the test fails (never skips) when it is not there."""
    path = os.environ.get(CHROMIUM_ENV, "/usr/bin/chromium")
    if not Path(path).is_file():
        pytest.fail(
            f"no Chromium at {path}: install Debian's chromium package (apt-get install chromium; "
            f".ci/run does) or set {CHROMIUM_ENV} to a Chromium executable",
            pytrace=False,
        )
    return path


def test_a_missing_chromium_fails_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHROMIUM_ENV, "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match=r"install Debian's chromium package"):
        chromium_path()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (empty sessionStorage) that reaches 127.0.0.1 only."""
    fresh = browser.new_context(viewport={"width": 1400, "height": 900})

    def loopback_only(route: Route) -> None:
        if re.match(
            r"^(https?|wss?)://127\.0\.0\.1(:\d+)?/", route.request.url
        ) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            route.abort()

    fresh.route("**/*", loopback_only)
    yield fresh
    fresh.close()


class MlflowUi:
    """``mlflow server`` on 127.0.0.1 over a service folder's MLflow store."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        command = [
            sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        self.out = folder / "mlflow-ui.out"
        with self.out.open("ab") as out:
            self.process = subprocess.Popen(
                command, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env
            )

    def wait(self, timeout: float = 240) -> None:  # about 10 s when the machine is idle
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mlflow server exited:\n{self.out.read_text(errors='replace')}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"mlflow server did not answer:\n{self.out.read_text(errors='replace')}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="module")
def linked(
    tmp_path_factory: pytest.TempPathFactory, empty_store: Path, example_data: Path
) -> Iterator[tuple[Service, MlflowUi]]:
    """A service with one worker whose page links runs to a real MLflow UI over its store."""
    folder = service_folder(tmp_path_factory.mktemp("linked"), empty_store, example_data)
    ui = MlflowUi(folder)  # starts while the service does
    try:
        running = start_service(folder, "--workers", "1", "--mlflow-ui", ui.url + "/")
        try:
            ui.wait()
            yield running, ui
        finally:
            running.stop()
    finally:
        ui.stop()


def open_page(context: BrowserContext, service: Service) -> tuple[Page, list[Any]]:
    """The page, past its token form; and every request it makes."""
    page = context.new_page()
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    page.goto(service.url + "/")
    expect(page.locator("#token-form")).to_be_visible()
    page.fill("#token-input", "not-the-token")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-error")).to_have_text("the service refused this token")
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#jobs-view")).to_be_visible()
    expect(page.locator("#token-form")).to_be_hidden()
    return page, requests


def patient_api(service: Service) -> httpx.Client:
    """The service's API with the token; patient: a fresh service's first submit imports the job kinds."""
    return httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)


def row(page: Page, job_id: str) -> Any:
    return page.locator(f'#jobs tbody tr[data-job-id="{job_id}"]')


# Two real servers (the service and mlflow server) and a browser: 85 s at a load of 13 on 2 cores,
# near 300 s (pytest's default limit here) at a load of 20.
@pytest.mark.timeout(900)
def test_the_page_lists_jobs_updates_them_and_links_their_runs_and_logs(
    linked: tuple[Service, MlflowUi], context: BrowserContext
) -> None:
    service, ui = linked
    page, requests = open_page(context, service)
    page.evaluate("window.__loadedOnce = true")
    with patient_api(service) as http:
        first = http.post("/jobs", json=quick_job()).json()["id"]
        second = http.post("/jobs", json=quick_job()).json()["id"]  # queued: one worker
        expect(row(page, second)).to_be_visible()
        expect(row(page, first).locator(".status")).to_have_text(re.compile("queued|running"))
        expect(row(page, second).locator(".status")).to_have_text(re.compile("queued|running"))
        expect(page.locator("#jobs tbody tr").first).to_have_attribute("data-job-id", second)  # newest first
        expect(row(page, first).locator(".status")).to_have_text("completed", timeout=SLOW_MS)
        assert page.evaluate("window.__loadedOnce") is True  # the status changed without a reload
        expect(row(page, first).locator(".duration")).to_have_text(re.compile(r"^\d+\.\d s$"))
        expect(row(page, first)).to_contain_text("100%")
        expect(row(page, first)).to_contain_text("training · service")

        # the log of the second job, followed from the list until the job ends
        row(page, second).locator("a.log-link").click()
        expect(page.locator("#log-view")).to_be_visible()
        expect(page.locator("#log-job")).to_have_text(second)
        expect(page.locator("#log-state")).to_have_attribute("data-ended", "completed", timeout=SLOW_MS)
        shown = page.locator("#log-text").text_content()
        assert shown == http.get(f"/jobs/{second}/logs").text and "Training finished" in (shown or "")
        assert page.evaluate("location.hash") == f"#log/{second}"

        page.click("text=← all jobs")
        expect(row(page, second).locator(".status")).to_have_text("completed")
        run_id = http.get(f"/jobs/{second}").json()["run_id"]
    link = row(page, second).locator("a.run-link")
    assert link.get_attribute("href") == f"{ui.url}/#/runs/{run_id}"
    with context.expect_page() as opened:
        link.click()
    mlflow_page = opened.value
    # MLflow's UI finds the run in its store and moves to the run's page in its experiment
    mlflow_page.wait_for_url(re.compile(rf"/#/experiments/\d+/runs/{run_id}$"), timeout=SLOW_MS)
    expect(mlflow_page.get_by_text(run_id).first).to_be_visible(timeout=SLOW_MS)

    assert page.evaluate("sessionStorage.getItem('trainyard.token')") == TOKEN
    ours = [r for r in requests if r.url.startswith(service.url)]
    assert not [r.url for r in ours if TOKEN in r.url]  # never in a URL
    api = [r for r in ours if "/jobs" in r.url]
    assert api and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api)


def test_what_a_job_says_is_shown_as_text_and_never_run(service: Service, context: BrowserContext) -> None:
    """A job's name and message with markup in them: shown literally, no element made, no script run."""
    attack = quick_job()
    attack["job"]["mlflow"]["run_name"] = '<img src=x onerror="window.__pwned = 2">'
    attack["job"]["inputs"]["columns"] = ["age", "<script>window.__pwned = 1</script>"]
    with patient_api(service) as http:
        bad = http.post("/jobs", json=attack).json()["id"]
        good = http.post("/jobs", json=quick_job()).json()["id"]
        page, _ = open_page(context, service)
        expect(row(page, bad).locator(".status")).to_have_text("failed", timeout=SLOW_MS)
        expect(row(page, bad).locator(".message")).to_contain_text(
            "has no column '<script>window.__pwned = 1</script>'"
        )
        expect(row(page, bad).locator(".job-name")).to_have_text(
            'training · <img src=x onerror="window.__pwned = 2">'
        )
        assert page.locator("#jobs tbody script, #jobs tbody img").count() == 0
        assert page.evaluate("window.__pwned") is None

        # without --mlflow-ui: the run id and the store it is in
        expect(row(page, good).locator(".status")).to_have_text("completed", timeout=SLOW_MS)
        run_id = http.get(f"/jobs/{good}").json()["run_id"]
        expect(row(page, good).locator(".run-id")).to_have_text(run_id)
        expect(row(page, good).locator(".tracking")).to_have_text(f"sqlite:///{service.folder / 'mlflow.db'}")
        assert row(page, good).locator("a.run-link").count() == 0

    # the failed job's log view, and a made-up job id with markup in the address
    row(page, bad).locator("a.log-link").click()
    expect(page.locator("#log-state")).to_have_attribute("data-ended", "failed")
    expect(page.locator("#log-text")).to_contain_text("<script>window.__pwned = 1</script>")
    page.evaluate("location.hash = '#log/' + encodeURIComponent('<img src=x onerror=\"window.__pwned=3\">')")
    expect(page.locator("#log-job")).to_have_text('<img src=x onerror="window.__pwned=3">')
    expect(page.locator("#log-state")).to_contain_text("no job '<img src=x")
    assert page.locator("main img, main script").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_the_page_is_served_with_a_strict_content_security_policy(service: Service) -> None:
    with httpx.Client(base_url=service.url) as anonymous:  # the page holds no data: no token needed
        answer = anonymous.get("/")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert anonymous.get("/static/page.js").headers["content-type"].startswith("text/javascript")
        assert anonymous.get("/static/secret.txt").status_code == 404
        assert anonymous.get("/page/settings").status_code == 401
    with patient_api(service) as http:
        assert http.get("/page/settings").json()["mlflow_ui"] is None
