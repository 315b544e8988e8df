"""Set up the checkout and run a task; needs only Python 3.11+ and pip.

    python3 dev.py quickstart   # example data + the quickstart training job on a local MLflow store
    python3 dev.py test         # the whole test suite (extra arguments go to pytest)

The tests run in one pytest worker per core (pytest-xdist's `-n auto`); `-n 0` runs them in one
process (for `--pdb`, say).

Both create `.venv` in the checkout from the lock file (uv.lock) on first use.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
UV_VERSION = "0.13.8"


def _run(*command: str | Path) -> None:
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True)


def setup() -> None:
    """Create .venv and install the locked dependencies into it (fast when already done)."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 the machine has
        sys.exit(f"Trainyard needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    if not (BIN / "uv").exists():
        if subprocess.run([str(BIN / "python"), "-m", "pip", "--version"], capture_output=True).returncode:
            _run(BIN / "python", "-m", "ensurepip", "--default-pip")
        _run(BIN / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV)}
    subprocess.run(
        [
            str(BIN / "uv"),
            "sync",
            "--frozen",
            "--all-extras",
            "--compile-bytecode",
            "--quiet",
            "--python",
            str(BIN / "python"),
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )


def main(argv: list[str]) -> int:
    task, rest = (argv[0], argv[1:]) if argv else ("", [])
    if task not in {"quickstart", "test", "setup"}:
        print(__doc__)
        return 2
    setup()
    if task == "quickstart":
        _run(BIN / "trainyard", "example-data", "--out", "data")
        _run(BIN / "trainyard", "run", "confs/quickstart.yaml", *rest)
    elif task == "test":
        _servers()
        return subprocess.run(
            [str(BIN / "python"), "-m", "pytest", *_workers(rest), *rest], cwd=ROOT
        ).returncode
    return 0


def _servers() -> None:
    """Debian's chromium and postgresql, which tests start on 127.0.0.1: installed with apt-get when
    missing and this machine has it (as root, or with sudo); else those tests fail saying so."""
    import glob
    import shutil

    if shutil.which("chromium") and glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return
    apt = shutil.which("apt-get")
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    sudo = [] if root else (["sudo", "-n"] if shutil.which("sudo") else None)
    if apt is None or sudo is None:
        print("note: chromium and postgresql are not installed: their tests will fail", flush=True)
        return
    print("installing Debian's chromium and postgresql for the tests that start them ...", flush=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, apt, "update", "-qq"], env=environment, check=False)
    subprocess.run(
        [*sudo, apt, "install", "-y", "-qq", "--no-install-recommends", "chromium", "postgresql"],
        env=environment,
        check=False,
    )


def _workers(pytest_args: list[str]) -> list[str]:
    """One worker per core, unless the arguments (or PYTEST_ADDOPTS) choose: the suite takes about
    1.5x less on 2 cores."""
    given = [*pytest_args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    chosen = any(arg.startswith(("-n", "--numprocesses")) or "no:xdist" in arg for arg in given)
    return [] if chosen else ["-n", "auto", "--dist", "worksteal"]


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)
