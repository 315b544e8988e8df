"""The watcher: each new content of a config in the folder runs once, then the ``--then`` jobs.

Events of the file system (watchfiles) only say when to look: each look scans the whole folder and
claims, in the ledger, the first content that no watcher has run, runs it in a child process
(``launch.py``), records its end, and looks again, until there is nothing left to claim. The folder
is also looked at every ``RESCAN_SECONDS`` (a claim of a watcher that died, a change an event
missed). One job at a time: a job uses every core; a second watcher on the folder runs a second.

Stopping: the first Ctrl-C lets the running job finish, a second one stops it (SIGTERM: its run
ends KILLED, and its content is pending again); SIGTERM stops it at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from trainyard.errors import JobCancelledError, TrainyardError
from trainyard.io.console import console
from trainyard.records import WATCH_CONTENT_HASH_TAG, WATCH_LAUNCH_TAG, process_token
from trainyard.runtime.cancellation import Cancellation
from trainyard.watch.folder import Config, is_config_name, scan
from trainyard.watch.launch import Ended, run_job
from trainyard.watch.ledger import LEDGER_FOLDER, Claim, Entry, Ledger
from trainyard.watch.runs import Store, find_run, load_mlflow, store_of
from trainyard.watch.schedule import Schedule

RESCAN_SECONDS = 10.0
TICK_MS = 1000  # how often the loop wakes without events: schedules and rescans are due then


class Watcher:
    """Watches ``folder``: runs every new content of its configs once, then ``then`` after each batch
    that ran one (or, given a ``schedule``, at its times instead); ``once`` runs one batch and ends."""

    def __init__(
        self,
        folder: Path,
        *,
        then: Sequence[Path] = (),
        schedule: Schedule | None = None,
        once: bool = False,
    ) -> None:
        self.folder = folder
        self.ledger = Ledger(folder)
        self.then = tuple(then)
        self.schedule = schedule
        self.once = once
        self.cancellation = Cancellation()
        self.failures = 0  # jobs that failed (watched configs and --then jobs)
        self.cut_short = False  # a job was stopped before its end
        self._running: str | None = None  # the config whose job runs now
        self._noted: set[tuple[str, str, str]] = set()

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        """Watch until asked to stop (once: one batch); the exit code: 130 when a job was stopped
        before its end, with ``once`` 1 when a job failed, else 0."""
        with self.cancellation.graceful(self):
            try:
                if self.once:
                    self._batch()
                else:
                    self._watch()
            except KeyboardInterrupt:  # asked again: whatever ran was stopped and recorded
                self.cut_short = True
        if self.cut_short:
            self.say("stopped")
            return 130
        if self.cancellation.requested:
            self.say("stopped")
        return 1 if self.once and self.failures else 0

    def _watch(self) -> None:
        from watchfiles import watch

        then = f"; then {', '.join(path.name for path in self.then)}" if self.then else ""
        when = f" {self.schedule}" if self.schedule and self.then else " after each batch" if then else ""
        load_mlflow()  # now, not when a job has just ended (or is being stopped)
        self.say(
            f"watching {self.folder} for *.yaml and *.yml{then}{when} "
            "(Ctrl-C: stop after the running job; twice: now)"
        )
        next_then = self.schedule.next_after(datetime.now()) if self.schedule and self.then else None
        rescan = 0.0  # at once: what is already there
        for changes in watch(
            self.folder,
            watch_filter=lambda change, path: is_config_name(Path(path).name),
            recursive=False,
            stop_event=_Requested(self.cancellation),
            rust_timeout=TICK_MS,
            yield_on_timeout=True,
        ):
            if changes or time.monotonic() >= rescan:
                self._batch()
                rescan = time.monotonic() + RESCAN_SECONDS
            if next_then is not None and datetime.now() >= next_then and not self.cancellation.requested:
                self._run_then()
                assert self.schedule is not None
                next_then = self.schedule.next_after(datetime.now())
            if self.cancellation.requested:
                return

    def _batch(self) -> None:
        """Run every content no watcher has claimed, one by one; then the ``--then`` jobs, if one ran."""
        succeeded = 0
        while not self.cancellation.requested:
            found = self._next_claim()
            if found is None:
                break
            succeeded += self._run_config(*found)
        if succeeded and self.then and self.schedule is None and not self.cancellation.requested:
            self._run_then()

    def _next_claim(self) -> tuple[Config, Claim] | None:
        configs, unreadable = scan(self.folder)
        for name, why in unreadable.items():
            self._once_per(name, why, "unreadable", f"cannot read {name}: {why}")
        entries = self.ledger.entries()
        for config in configs:
            entry = entries.get(config.content_hash)
            if entry is not None and (entry.state != "running" or entry.alive):
                self._note(config, entry)
                continue
            claim = self.ledger.claim(config.content_hash, config.name, self._log(config))
            if claim is not None:
                return config, claim
        return None

    # -- one config ------------------------------------------------------------------------------

    def _run_config(self, config: Config, claim: Claim) -> bool:
        """Run a claimed config and record its end; whether it succeeded."""
        name, digest = config.name, config.content_hash
        if claim.previous is not None:
            self.say(f"taking over {name}: its watcher (pid {_pid(claim.previous.watcher)}) is gone")
        else:
            self.say(f"picked up {name} (sha256 {digest[:12]})")
        store = store_of(config.path)
        if claim.previous is not None and store is not None:
            run_id = self._look_up(store, WATCH_CONTENT_HASH_TAG, digest, finished=True)
            if run_id is not None:
                self.ledger.finish(digest, run_id)
                self.say(f"done {name}: its run {run_id} had finished before its watcher was gone")
                return True
        launch = uuid.uuid4().hex
        tags = {WATCH_CONTENT_HASH_TAG: digest, WATCH_LAUNCH_TAG: launch}
        log = self.folder / self._log(config)
        ended = self._run(
            config.path, log, tags, name, lambda pid: self.ledger.started(digest, process_token(pid))
        )
        run_id = self._look_up(store, WATCH_LAUNCH_TAG, launch) if store is not None else None
        took = f"{ended.seconds:.1f} s"
        if ended.returncode == 0:
            self.ledger.finish(digest, run_id)
            self.say(f"done {name} in {took}: run {run_id or '(not found in MLflow)'}")
            return True
        if ended.stopped:
            self.ledger.release(digest)
            self.cut_short = True
            self.say(
                f"stopped {name} after {took}{_run(run_id)}: pending again, it runs when a watcher next starts"
            )
            return False
        self.failures += 1
        self.ledger.fail(digest, ended.error or "failed", run_id)
        self.say(f"failed {name} after {took}{_run(run_id)}: {ended.error}")
        return False

    def _run_then(self) -> None:
        """Run each ``--then`` job once, in order (a failure does not stop the next)."""
        for config in self.then:
            if self.cancellation.requested:
                return
            name = f"then {config.name}"
            store = store_of(config)
            launch = uuid.uuid4().hex
            log = self.folder / LEDGER_FOLDER / "logs" / f"then-{config.stem}.log"
            ended = self._run(config, log, {WATCH_LAUNCH_TAG: launch}, name, lambda pid: None)
            run_id = self._look_up(store, WATCH_LAUNCH_TAG, launch) if store is not None else None
            took = f"{ended.seconds:.1f} s"
            if ended.returncode == 0:
                self.say(f"done {name} in {took}: run {run_id or '(not found in MLflow)'}")
            elif ended.stopped:
                self.cut_short = True
                self.say(f"stopped {name} after {took}{_run(run_id)}")
            else:
                self.failures += 1
                self.say(f"failed {name} after {took}{_run(run_id)}: {ended.error}")

    def _run(
        self, config: Path, log: Path, tags: dict[str, str], name: str, record: Callable[[int], None]
    ) -> Ended:
        def started(pid: int) -> None:
            record(pid)
            self.say(f"started {name} (pid {pid}; log {_shown(log)})")

        self._running = name
        try:
            return run_job(config, log, tags, self.cancellation, started)
        finally:
            self._running = None

    # -- what the console says -------------------------------------------------------------------

    def say(self, text: str) -> None:
        """One line (or one event) on the watcher's console, with the time."""
        console.print(f"{time.strftime('%H:%M:%S')} {text}", markup=False, highlight=False, soft_wrap=True)

    def _note(self, config: Config, entry: Entry) -> None:
        """Say why a config is not run, once: its content ran as another file, or runs elsewhere."""
        if entry.state == "running":
            pid = _pid(entry.watcher)
            self._once_per(
                config.name,
                config.content_hash,
                "running",
                f"{config.name} runs in another watcher (pid {pid})",
            )
        elif entry.file != config.name:
            outcome = f"done, run {entry.run_id}" if entry.state == "done" else "failed"
            self._once_per(
                config.name,
                config.content_hash,
                entry.state,
                f"skipped {config.name}: same content as {entry.file} ({outcome}), not run again",
            )

    def _once_per(self, name: str, key: str, state: str, text: str) -> None:
        if (name, key, state) not in self._noted:
            self._noted.add((name, key, state))
            self.say(text)

    def _look_up(self, store: Store, tag: str, value: str, *, finished: bool = False) -> str | None:
        try:
            return find_run(store, tag, value, finished=finished)
        except TrainyardError as error:
            self.say(f"cannot find the MLflow run: {error}")
            return None

    @staticmethod
    def _log(config: Config) -> str:
        """Where the job's output goes, relative to the folder."""
        return f"{LEDGER_FOLDER}/logs/{config.path.stem}-{config.content_hash[:12]}.log"

    # -- GracefulStop: the CLI's signal handlers ask here ---------------------------------------

    def first_request(self, reason: KeyboardInterrupt) -> KeyboardInterrupt:
        """Stop after the running job; at once when SIGTERM asked (``run_job`` stops it)."""
        signal = "SIGTERM" if isinstance(reason, JobCancelledError) else "Ctrl-C"
        if self._running is None:
            self.say(f"{signal}: stopping")
        elif isinstance(reason, JobCancelledError):
            self.say(f"{signal}: stopping {self._running} now (its run ends KILLED)")
        else:
            self.say(f"{signal}: stopping once {self._running} has ended (Ctrl-C again: stop it now)")
        return reason

    def repeated_request(self) -> KeyboardInterrupt:
        """Asked again: stop the running job now (``run_job`` stops it)."""
        if self._running is not None:
            self.say(f"stopping {self._running} now (its run ends KILLED)")
        return KeyboardInterrupt("interrupted again (Ctrl-C)")


class _Requested:
    """watchfiles' stop event: set once a stop is requested."""

    def __init__(self, cancellation: Cancellation) -> None:
        self._cancellation = cancellation

    def is_set(self) -> bool:
        return self._cancellation.requested


def _pid(token: str) -> str:
    parts = token.split(":")
    return parts[1] if len(parts) == 3 else token


def _run(run_id: str | None) -> str:
    return f" (run {run_id})" if run_id else ""


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
