"""The ``trainyard`` command: run jobs, print the config schema, write example data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainyard import __version__
from trainyard.errors import ConfigurationError, TrainyardError

# The other imports are in the functions that need them: `trainyard --help` loads only this module.

EPILOG = """examples:
  trainyard example-data
  trainyard run confs/quickstart.yaml
  trainyard run confs/quickstart.yaml job.model.params.max_iter=500 job.mlflow.run_name=longer
  trainyard run confs/quickstart.yaml confs/more.yaml --dry-run
  trainyard watch confs/incoming --then confs/promote.yaml
  trainyard schema > trainyard.schema.json
  trainyard serve                      # the job service on 127.0.0.1:8000 (docs/service.md)
  trainyard submit confs/quickstart.yaml --wait"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    # --debug is accepted before or after the command; SUPPRESS keeps a subcommand from resetting it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
    )
    parser = argparse.ArgumentParser(
        prog="trainyard",
        description="Run ML jobs described in YAML, tracked in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"trainyard {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        parents=[common],
        help="run a job",
        description="Merge the config files in order, apply dotted.key=value overrides, validate, run.",
    )
    run.add_argument(
        "configs", nargs="+", metavar="CONFIG.yaml|key=value", help="config files, then overrides"
    )
    run.add_argument(
        "--dry-run", action="store_true", help="validate and print the resolved config; run nothing"
    )
    run.add_argument(
        "--allow-import-paths",
        action="store_true",
        help="accept model.estimator as an import path 'package.module:Class' (it runs that module's "
        "code; also TRAINYARD_ALLOW_IMPORT_PATHS=1); off by default",
    )
    schema = commands.add_parser("schema", parents=[common], help="print the JSON Schema of job configs")
    schema.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    data = commands.add_parser(
        "example-data",
        parents=[common],
        help="write the example data sets (CSV) the example configs use",
    )
    data.add_argument("--out", type=Path, default=Path("data"), help="folder to write to (default: data)")
    watch = commands.add_parser(
        "watch",
        parents=[common],
        help="run every new or changed config in a folder, once",
        description="Run each new content of the *.yaml and *.yml files in DIR once, as `trainyard run "
        "FILE` would, in a child process (never with import paths); the ledger DIR/.trainyard-watch "
        "keeps what ran, for every watcher of DIR. Ctrl-C stops after the running job; twice: now.",
    )
    watch.add_argument("folder", type=Path, metavar="DIR", help="the folder of job configs")
    watch.add_argument("--once", action="store_true", help="run what is there, then exit (1: one failed)")
    watch.add_argument(
        "--then",
        nargs="+",
        default=[],
        metavar="CONFIG.yaml",
        help="jobs to run after each batch in which a config succeeded (kept outside DIR; give DIR first)",
    )
    watch.add_argument(
        "--every",
        metavar="DURATION|CRON",
        help="run the --then jobs on this schedule instead: 30s, 10m, 1h30m, or '0 * * * *'",
    )
    watch.add_argument("--status", action="store_true", help="print each config's state and exit")
    from trainyard.service.commands import add_commands  # argparse only: the service loads on use

    add_commands(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Options may sit between config arguments (run a.yaml --debug k=v): the rest are configs too.
    if extra and (args.command not in ("run", "submit") or any(item.startswith("-") for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.configs += extra
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _dispatch(args)
    except TrainyardError as error:
        if args.debug:
            raise
        _error(str(error))
        return error.exit_code
    except KeyboardInterrupt as interruption:  # Ctrl-C, or SIGTERM (JobCancelledError)
        _error(str(interruption) or "interrupted")
        return 130
    except Exception as error:
        if args.debug:
            raise
        _error(f"unexpected {type(error).__name__}: {error}\n(rerun with --debug for the traceback)")
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        allow = args.allow_import_paths or _env_allows_import_paths()
        return _run(args.configs, dry_run=args.dry_run, allow_import_paths=allow)
    if args.command == "schema":
        from trainyard.settings import json_schema

        text = json.dumps(json_schema(), indent=2)
        if args.output:
            args.output.write_text(text + "\n")
        else:
            print(text)
        return 0
    if args.command == "watch":
        return _watch(args)
    if args.command == "example-data":
        from trainyard.io.examples import write_example_data

        for path in write_example_data(args.out):
            print(path)
        return 0
    from trainyard.service.commands import NAMES, run_command

    if args.command in NAMES:
        return run_command(args)
    raise AssertionError(args.command)


def _watch(args: argparse.Namespace) -> int:
    from trainyard.runtime.signals import cancel_on_signals
    from trainyard.watch.command import make_watcher, print_status, watched_folder  # rich, watchfiles

    if args.status:
        if args.once or args.then or args.every:
            raise ConfigurationError(
                "--status prints the state of the folder's configs and exits: "
                "it takes no --once, --then or --every"
            )
        return print_status(watched_folder(args.folder))
    watcher = make_watcher(args.folder, once=args.once, then=args.then, every=args.every)
    with cancel_on_signals(watcher.cancellation):  # Ctrl-C: after the running job; twice: now
        return watcher.run()


def _env_allows_import_paths() -> bool:
    """TRAINYARD_ALLOW_IMPORT_PATHS: 1/true/yes allow, 0/false/no/empty refuse, anything else is an error."""
    import os

    from trainyard.core.estimators import IMPORT_PATHS_ENV

    value = os.environ.get(IMPORT_PATHS_ENV, "").strip().lower()
    if value in {"", "0", "false", "no"}:
        return False
    if value in {"1", "true", "yes"}:
        return True
    raise ConfigurationError(f"{IMPORT_PATHS_ENV}={value!r}: expected 1 (allow import paths) or 0")


def _run(arguments: list[str], *, dry_run: bool, allow_import_paths: bool) -> int:
    import gc

    # The ML stack allocates millions of long-lived objects while importing; the default thresholds
    # rescan them over and over (about 0.5 s), and once more at exit (about 1 s). Collect less often,
    # and freeze what exists before exit so the final collections skip it (benchmarks/training.py).
    gc.set_threshold(50_000, 20, 20)
    try:
        return _run_job(arguments, dry_run=dry_run, allow_import_paths=allow_import_paths)
    finally:
        gc.freeze()


def _run_job(arguments: list[str], *, dry_run: bool, allow_import_paths: bool) -> int:
    from trainyard.config import load_layers, resolve, validate

    files = [a for a in arguments if ("=" not in a and not a.startswith("~")) or Path(a).is_file()]
    overrides = [a for a in arguments if a not in files]
    if not files:
        raise TrainyardError("give at least one config file: trainyard run CONFIG.yaml [key=value ...]")
    layers = load_layers(files, overrides)
    data = resolve(layers)
    if dry_run:
        import yaml

        from trainyard.jobs.base import Job

        job = validate(data, layers, allow_import_paths=allow_import_paths).job
        print(yaml.safe_dump(job.resolved_config(), sort_keys=False), end="")
        if type(job).preview is not Job.preview:  # e.g. a promotion's decision, made but not applied
            with job:
                print(job.preview())
        return 0
    from contextlib import nullcontext

    from trainyard.runtime.signals import cancel_on_signals
    from trainyard.settings import job_class

    job_config = data.get("job")
    kind = job_class(job_config.get("KIND")) if isinstance(job_config, dict) else None
    with kind.started_early() if kind else nullcontext():  # e.g. tuning's MLflow writer
        job = validate(data, layers, allow_import_paths=allow_import_paths).job
        job.use_config_files(files)
        with cancel_on_signals(job.cancellation), job:  # Ctrl-C and SIGTERM ask the job to stop
            job.run()
    return 0


def _error(message: str) -> None:
    from rich.markup import escape

    from trainyard.io.console import console

    console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
