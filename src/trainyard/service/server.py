"""``trainyard serve``: the store, the warm worker pool and the HTTP API in one process."""

from __future__ import annotations

import ipaddress
import os
import sys
import threading
from pathlib import Path

from trainyard.errors import ConfigurationError
from trainyard.service.store import DEFAULT_STORE

TOKEN_ENV = "TRAINYARD_TOKEN"
DEFAULT_LOGS = "trainyard-jobs-logs"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_roots(roots: list[str] | None) -> list[Path]:
    """The data roots as absolute folders (default: the working folder); each must be a folder."""
    folders = [Path(root).resolve() for root in roots or ["."]]
    for given, folder in zip(roots or ["."], folders, strict=True):
        if not folder.is_dir():
            raise ConfigurationError(f"--data-root {given}: not a folder")
    return folders


def check_mlflow_ui(url: str | None) -> str | None:
    """The MLflow UI's base URL the page links runs to (http or https, no trailing slash)."""
    if url is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"--mlflow-ui {url}: expected an http(s) URL such as http://127.0.0.1:5000")
    return url.rstrip("/")


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    store_url: str = DEFAULT_STORE,
    workers: int | None = None,
    data_roots: list[str] | None = None,
    token: str | None = None,
    logs: str = DEFAULT_LOGS,
    grace_s: float = 10.0,
    max_body_bytes: int = 1_000_000,
    keep_days: float | None = None,
    keep_jobs: int | None = None,
    prune_every_s: float | None = None,
    mlflow_ui: str | None = None,
) -> int:
    """Run the service until SIGINT or SIGTERM; running jobs are then stopped (ended as lost)."""
    from trainyard.service.retention import DEFAULT_EVERY_S, Retention
    from trainyard.service.store import Store
    from trainyard.service.workers import WorkerPool

    token = token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and token is None:
        raise ConfigurationError(
            f"--host {host}: the service listens beyond this machine only with a token "
            f"(--token or {TOKEN_ENV}); or listen on 127.0.0.1"
        )
    roots = check_roots(data_roots)
    retention = Retention(keep_days, keep_jobs, prune_every_s or DEFAULT_EVERY_S)
    page_mlflow_ui = check_mlflow_ui(mlflow_ui)
    store = Store(store_url)
    pool = WorkerPool(store, Path(logs).resolve(), workers=workers, grace_s=grace_s)
    pool.start()  # before the server's threads: the fork server starts from a single thread
    retention.start(store, pool.logs)  # at once, then every prune_every_s
    # imported after the fork server started: its preloading and these imports share the cores
    import uvicorn

    from trainyard.service.app import ServiceConfig, create_app
    from trainyard.service.submission import preload

    threading.Thread(target=preload, name="trainyard-preload", daemon=True).start()
    config = ServiceConfig(
        store=store, logs=pool.logs, roots=roots, token=token, wake=pool.wake, workers=pool.workers,
        max_body_bytes=max_body_bytes, mlflow_ui=page_mlflow_ui,
    )  # fmt: skip
    from trainyard.io.sources import without_credentials

    roots_shown = ", ".join(str(root) for root in roots)
    print(
        f"trainyard service on http://{host}:{port} — store {without_credentials(store.url)}, "
        f"{pool.workers} worker(s), data roots {roots_shown}, logs in {pool.logs}"
        + ("" if token else " (no token: loopback only)")
        + (f"; {retention.describe()}" if retention.active else ""),
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)
    finally:
        retention.stop()
        pool.stop()
        store.close()
    return 0
