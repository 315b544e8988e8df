"""The ``trainyard`` command: run jobs, print the config schema, write example data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainyard import __version__
from trainyard.config import load_layers, resolve, validate
from trainyard.core.estimators import IMPORT_PATHS_ENV
from trainyard.errors import ConfigurationError, TrainyardError
from trainyard.io.examples import write_example_data
from trainyard.runtime.signals import cancel_on_signals

EPILOG = """examples:
  trainyard example-data
  trainyard run confs/quickstart.yaml
  trainyard run confs/quickstart.yaml job.model.params.max_iter=500 job.mlflow.run_name=longer
  trainyard run confs/quickstart.yaml confs/more.yaml --dry-run
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
    if args.command == "example-data":
        for path in write_example_data(args.out):
            print(path)
        return 0
    from trainyard.service.commands import NAMES, run_command

    if args.command in NAMES:
        return run_command(args)
    raise AssertionError(args.command)


def _env_allows_import_paths() -> bool:
    """TRAINYARD_ALLOW_IMPORT_PATHS: 1/true/yes allow, 0/false/no/empty refuse, anything else is an error."""
    import os

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
