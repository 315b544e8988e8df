"""The CLI's service commands: ``serve``, ``submit``, ``jobs``, ``logs``, ``cancel``, ``delete``.

Light at import (argparse only): each command loads what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

NAMES = ("serve", "submit", "jobs", "logs", "cancel", "delete")


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the service's commands to the ``trainyard`` subcommands."""
    serve = commands.add_parser(
        "serve", parents=[common], help="run the job service (HTTP API, warm workers)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument(
        "--store",
        default="sqlite:///trainyard-jobs.db",
        help="job store URL (default: sqlite:///trainyard-jobs.db)",
    )
    serve.add_argument("--workers", type=int, help="jobs run at once (default: half the usable cores)")
    serve.add_argument(
        "--data-root", action="append", dest="data_roots", metavar="DIR",
        help="a folder jobs may read and write in (repeatable; default: the working folder)",
    )  # fmt: skip
    serve.add_argument("--token", help="bearer token clients must send (default: TRAINYARD_TOKEN)")
    serve.add_argument("--logs", default="trainyard-jobs-logs", help="folder of the jobs' log files")
    serve.add_argument(
        "--grace", type=float, default=10.0, help="seconds a stopped job gets before it is killed"
    )
    serve.add_argument(
        "--keep-days", type=float, metavar="N", help="delete finished jobs (and logs) ended over N days ago"
    )
    serve.add_argument(
        "--keep-jobs", type=int, metavar="N", help="keep only the N newest finished jobs (and logs)"
    )
    serve.add_argument(
        "--prune-every", type=float, metavar="S",
        help="seconds between retention passes (default: 300; one runs at start too)",
    )  # fmt: skip
    serve.add_argument(
        "--mlflow-ui", metavar="URL",
        help="the MLflow UI the web page links runs to, e.g. http://127.0.0.1:5000",
    )  # fmt: skip
    submit = commands.add_parser(
        "submit", parents=[common], help="send a job to the service (TRAINYARD_URL)",
        description="Merge the config files and overrides as `run` does, and submit the job to the service.",
    )  # fmt: skip
    submit.add_argument(
        "configs", nargs="+", metavar="CONFIG.yaml|key=value", help="config files, then overrides"
    )
    submit.add_argument(
        "--wait", action="store_true", help="wait for the job to end; exit 1 unless it completed"
    )
    submit.add_argument(
        "--max-runtime", type=float, metavar="S", help="stop and fail the job after S seconds"
    )
    submit.add_argument("--max-retries", type=int, default=0, help="times to rerun it if its worker dies")
    submit.add_argument("--idempotency-key", help="a retried submit with the same key returns the first job")
    jobs = commands.add_parser("jobs", parents=[common], help="list the service's jobs, newest first")
    jobs.add_argument("--status", help="only jobs in this status")
    jobs.add_argument("--kind", help="only jobs of this kind")
    jobs.add_argument("--limit", type=int, default=20, help="how many (default: 20)")
    logs = commands.add_parser("logs", parents=[common], help="print a job's log")
    logs.add_argument("id", help="the job's id")
    logs.add_argument("--follow", "-f", action="store_true", help="stream it until the job ends")
    cancel = commands.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    cancel.add_argument("id", help="the job's id")
    delete = commands.add_parser(
        "delete", parents=[common], help="delete a finished job and its log from the service"
    )
    delete.add_argument("id", help="the job's id")


def run_command(args: argparse.Namespace) -> int:
    """Run one of ``NAMES``; its exit code."""
    if args.command == "serve":
        from trainyard.service.server import serve

        return serve(
            host=args.host, port=args.port, store_url=args.store, workers=args.workers,
            data_roots=args.data_roots, token=args.token, logs=args.logs, grace_s=args.grace,
            keep_days=args.keep_days, keep_jobs=args.keep_jobs, prune_every_s=args.prune_every,
            mlflow_ui=args.mlflow_ui,
        )  # fmt: skip
    from trainyard.service.client import JobServiceClient

    with JobServiceClient() as client:
        if args.command == "submit":
            return _submit(client, args)
        if args.command == "jobs":
            return _jobs(client, args)
        if args.command == "logs":
            if args.follow:
                for text in client.follow(args.id):
                    sys.stdout.write(text)
                    sys.stdout.flush()
            else:
                sys.stdout.write(client.logs(args.id))
            return 0
        if args.command == "cancel":
            job = client.cancel(args.id)
            print(f"{job['id']} {job['status']}: {job['message']}")
            return 0
        if args.command == "delete":
            client.delete(args.id)
            print(f"{args.id} deleted")
            return 0
    raise AssertionError(args.command)


def _submit(client: Any, args: argparse.Namespace) -> int:
    from trainyard.config import load_layers, resolve
    from trainyard.errors import TrainyardError

    arguments = args.configs
    files = [a for a in arguments if ("=" not in a and not a.startswith("~")) or Path(a).is_file()]
    overrides = [a for a in arguments if a not in files]
    if not files:
        raise TrainyardError("give at least one config file: trainyard submit CONFIG.yaml [key=value ...]")
    document = resolve(load_layers(files, overrides))
    job = client.submit(
        document, idempotency_key=args.idempotency_key, max_runtime_s=args.max_runtime,
        max_retries=args.max_retries,
    )  # fmt: skip
    print(f"{job['id']} {job['status']}")
    if not args.wait:
        return 0
    job = client.wait(job["id"])
    print(_line(job))
    return 0 if job["status"] == "completed" else 1


def _line(job: dict[str, Any]) -> str:
    extra = []
    if job.get("metrics"):
        extra.append(", ".join(f"{k}={v:.4g}" for k, v in job["metrics"].items()))
    if job.get("run_id"):
        extra.append(f"run {job['run_id']}")
    if job.get("model_version"):
        extra.append(f"version {job['model_version']}")
    if job["status"] in ("failed", "cancelled") and job.get("message"):
        extra.append(str(job["message"]))
    return f"{job['id']} {job['status']}" + (f": {'; '.join(extra)}" if extra else "")


def _jobs(client: Any, args: argparse.Namespace) -> int:
    found = client.list(limit=args.limit, status=args.status, kind=args.kind)
    print(f"{'ID':32}  {'KIND':10}  {'STATUS':9}  {'DURATION':>8}  STEP / MESSAGE")
    for job in found["jobs"]:
        duration = f"{job['duration_s']:.1f}s" if job.get("duration_s") is not None else "-"
        where = job.get("progress", {}).get("step") if job["status"] == "running" else job.get("message")
        print(f"{job['id']:32}  {job['kind']:10}  {job['status']:9}  {duration:>8}  {where or ''}")
    print(f"{len(found['jobs'])} of {found['total']} jobs")
    return 0
