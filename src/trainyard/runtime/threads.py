"""Native thread pools (OpenMP, BLAS): how many threads each fit may start, and setting them.

Compiled estimators (scikit-learn's HistGradientBoosting, XGBoost, anything on BLAS) start one thread
per core for every fit unless told otherwise. Fits that run at once then share the cores with more
threads than there are cores, and OpenMP's threads spin while they wait for each other: two
``trainyard run`` processes on one study of a HistGradientBoosting model took 4 to 6 times as long as
one process alone, and 3.3 to 5.6 times as long as with this rule (2 cores;
docs/benchmarks-threads.md). So each fit gets the cores divided among the fits running at once on
this host (``threads_per_fit``), unless the job's ``threads`` setting names a number.

The rule is one function of numbers the caller counts: a tuning job counts its own trial threads
(``n_jobs``) and the trials that other live workers of this host run in its study; anything else that
runs fits at once (the job service's concurrent jobs) counts them its own way.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

import annotated_types
from pydantic import BeforeValidator

from trainyard.io.logging import get_logger
from trainyard.runtime import processes

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

AUTO: Literal["auto"] = "auto"


def _threads_setting(value: object) -> object:
    """A number of threads (1 or more, as a number or its digits) or ``auto``; one message otherwise."""
    if value == AUTO:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a number of threads (1 or more) or {AUTO}, got {value!r}")
    return value


Threads = Annotated[
    Annotated[int, annotated_types.Ge(1)] | Literal["auto"], BeforeValidator(_threads_setting)
]
# Fits of fewer cells (train rows x input columns) run on one native thread under auto: the threads'
# start and their barriers cost more than they share. A HistGradientBoosting fit of 331 x 10 took
# 0.04 s on one thread, 0.06 s on two, 0.5 s on two waiting asleep (the service's jobs) and 0.3 to 57 s
# on two among busy cores; the two-thread fit pays only from about 10,000 x 10 on an idle machine.
SMALL_FIT_CELLS = 100_000
RECOUNT_SECONDS = 1.0  # how often a running search counts the other workers' trials (a storage read)
# A worker seen running a trial counts this long after: between two of its trials it runs none.
REMEMBER_SECONDS = 5.0
_ENVIRONMENT = {  # variables that set a pool's size when the library loads
    "openmp": ("OMP_NUM_THREADS",),
    "blas": ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "OMP_NUM_THREADS"),
}


_jobs_at_once = 1  # the jobs this process shares the host's cores with, itself included


def share_cores_among_jobs(jobs: int) -> None:
    """This process is one of ``jobs`` that run at once on this host (the job service's workers):
    under auto, its fits get ``1 / jobs`` of the usable cores."""
    global _jobs_at_once
    _jobs_at_once = max(1, jobs)


def threads_per_fit(cores: int, fits_at_once: int) -> int:
    """The rule: the cores divided among the fits running at once on this host, at least one each."""
    return max(1, cores // max(1, fits_at_once))


@dataclass(frozen=True)
class Choice:
    """The native threads of each fit, and what they were chosen from (for the log)."""

    threads: int
    cores: int
    here: int  # fits this process runs at once (a tuning job's n_jobs)
    elsewhere: int = 0  # fits other workers of this host run now (their running trials)
    workers: int = 0  # those other workers
    setting: int | Literal["auto"] = AUTO
    kept_by: str = ""  # what keeps a pool below ``threads`` (the environment), if anything
    cells: int | None = None  # the cells of each fit's table, when one thread was chosen for them
    jobs: int = 1  # the jobs at once whose share of the host's cores ``cores`` is (the service's workers)

    def describe(self, unit: str = "trial") -> str:
        """E.g. ``1 per trial (2 cores, 2 trials at once on this host: 1 here, 1 by another worker;
        set job.threads to change)``; ``unit`` is what runs at once (``trial``, ``fit``)."""
        at_once = self.here + self.elsewhere
        facts = [f"{self.cores} core{'s' * (self.cores != 1)}"]
        if self.jobs > 1:
            facts[0] += f" of this job's share: {self.jobs} jobs at once in the service"
        if at_once > 1 or unit == "trial":
            counted = f"{at_once} {unit}{'s' * (at_once != 1)} at once"
            if self.workers:
                others = "another worker" if self.workers == 1 else f"{self.workers} other workers"
                counted += f" on this host: {self.here} here, {self.elsewhere} by {others}"
            facts.append(counted)
        if self.setting != AUTO and self.threads * at_once > self.cores:
            facts.append("more threads than cores")
        if self.cells is not None:
            facts.append(f"a small table: {self.cells:,} cells, fewer than {SMALL_FIT_CELLS:,}")
        if self.kept_by:
            facts.append(self.kept_by)
        how = "set job.threads to change" if self.setting == AUTO else "as job.threads says"
        return f"{self.threads} per {unit} ({', '.join(facts)}; {how})"


def choose(
    setting: int | Literal["auto"],
    cores: int,
    here: int,
    elsewhere: Mapping[str, int] | None = None,
    cells: int | None = None,
    jobs: int = 1,
) -> Choice:
    """The threads of each fit: ``setting`` when it is a number, else the rule for ``here`` fits in
    this process and ``elsewhere`` (worker -> its running fits) on the rest of the host, and one
    for a table of fewer than SMALL_FIT_CELLS ``cells``; ``cores`` is this job's share of the
    host's, one of ``jobs`` at once (for the log)."""
    running = dict(elsewhere or {})
    at_once = here + sum(running.values())
    threads = setting if isinstance(setting, int) else threads_per_fit(cores, at_once)
    small = setting == AUTO and cells is not None and cells < SMALL_FIT_CELLS and threads > 1
    return Choice(
        1 if small else threads,
        cores,
        here,
        sum(running.values()),
        len(running),
        setting,
        cells=cells if small else None,
        jobs=jobs,
    )


class NativeThreads:
    """Sets the native thread pools of the fits this process runs; leaving puts back what it had.

    Enter it in the thread that starts the fits, and call ``before_fit`` in the thread of each fit
    (it is cheap). OpenMP keeps its limit per thread: one set in the main thread leaves the trials
    of Optuna's ``n_jobs`` threads at one thread per core (threadpoolctl's ``threadpool_info()`` in a
    trial thread said so), so each fit's thread sets its own. BLAS (OpenBLAS) has one limit per
    process, set when the choice changes.

    ``"auto"`` never raises a pool above the size it had when the job started: a user's
    ``OMP_NUM_THREADS=1`` stays. A number is set as given. With ``elsewhere`` (worker -> fits it runs
    now) the choice is counted again at most every ``RECOUNT_SECONDS``, before a fit, and a change is
    logged: a worker that starts on the same study later makes the first one step down at its next fit.
    Thread-safe.
    """

    def __init__(
        self,
        setting: int | Literal["auto"],
        here: int = 1,
        elsewhere: Callable[[], Mapping[str, int]] | None = None,
        cores: int | None = None,
        unit: str = "trial",
        clock: Callable[[], float] = time.monotonic,
        cells: int | None = None,
    ) -> None:

        self.setting = setting
        self.here = here
        self.cores = cores if cores is not None else max(1, processes.usable_cores() // _jobs_at_once)
        self.jobs = _jobs_at_once if cores is None else 1
        self.unit = unit
        self.cells = cells  # of each fit's table, where known (see SMALL_FIT_CELLS)
        self._resized = False  # the cells changed: choose again at the next fit
        self._elsewhere = elsewhere if setting == AUTO else None
        self._clock = clock
        self._lock = threading.Lock()
        self._local = threading.local()  # the OpenMP limit this thread has set
        self._seen: dict[str, tuple[float, int]] = {}  # worker -> (when it was seen, its running fits)
        self._next_count = 0.0
        self._controller: ThreadpoolController | None = None
        self._restore: Any = None
        self._caps: dict[str, int] = {}  # user API -> the smallest pool size it had at the start
        self.choice = self._choose()

    def __enter__(self) -> NativeThreads:
        from threadpoolctl import ThreadpoolController

        self._controller = ThreadpoolController()  # finds the libraries loaded now (about 15 ms)
        for library in self._controller.info():
            api, size = library["user_api"], int(library["num_threads"])
            self._caps[api] = min(size, self._caps.get(api, size))
        with self._lock:
            self.choice = self._count(force=True)
            self._restore = self._controller.limit(limits=self._limits(self.choice.threads))
        self._local.threads = self.choice.threads
        get_logger().info("native threads: %s", self.choice.describe(self.unit))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._restore is not None:
            self._restore.restore_original_limits()
            self._restore = None
        self._controller = None

    def sized(self, rows: int, columns: int) -> None:
        """The table the fits learn from is known (``rows`` x ``columns``): choose again (a change is
        logged) and set this thread's pools."""
        with self._lock:
            self.cells, self._resized = rows * columns, True
        self.before_fit()

    def before_fit(self) -> int:
        """Set this thread's pools for the fit it starts; the threads it may use."""
        if self._controller is None:
            return self.choice.threads
        with self._lock:
            previous = self.choice
            self.choice = self._count(force=self._resized)
            self._resized = False
            if self.choice.threads != previous.threads:
                blas = self._limits(self.choice.threads).get("blas", self.choice.threads)
                self._controller.limit(limits=blas, user_api="blas")  # one limit for the process
                get_logger().info("native threads: now %s", self.choice.describe(self.unit))
        threads = self.choice.threads
        if getattr(self._local, "threads", None) != threads:
            openmp = self._limits(threads).get("openmp", threads)
            self._controller.limit(limits=openmp, user_api="openmp")
            self._local.threads = threads
        return threads

    def _count(self, force: bool = False) -> Choice:
        """The choice, with the other workers counted again when that is due. Call with the lock held."""
        now = self._clock()
        if self._elsewhere is None:
            return self._kept(self._choose()) if force else self.choice
        if now < self._next_count and not force:
            return self.choice
        self._next_count = now + RECOUNT_SECONDS
        try:
            running = self._elsewhere()
        except Exception as error:  # the storage could not be read: keep the last count
            get_logger().debug("native threads: other workers not counted: %s", error)
            running = {}
        for worker, fits in running.items():
            self._seen[worker] = (now, fits)
        self._seen = {w: seen for w, seen in self._seen.items() if now - seen[0] <= REMEMBER_SECONDS}
        return self._kept(self._choose({w: n for w, (_, n) in self._seen.items()}))

    def _choose(self, elsewhere: Mapping[str, int] | None = None) -> Choice:
        return choose(self.setting, self.cores, self.here, elsewhere, self.cells, self.jobs)

    def _kept(self, choice: Choice) -> Choice:
        """``choice`` as the pools will have it: auto keeps a pool the environment made smaller."""
        if self.setting != AUTO or not self._caps:
            return choice
        limits = self._limits(choice.threads)
        threads = max(limits.values())
        kept = [f"{api} kept at {size}" for api, size in sorted(limits.items()) if size < threads]
        if threads < choice.threads:
            kept.insert(0, f"{choice.threads} by the rule but kept at {threads}")
        if not kept:
            return choice
        variables = {name for api in limits for name in _ENVIRONMENT.get(api, ())}
        given = sorted(f"{name}={os.environ[name]}" for name in variables if name in os.environ)
        source = " by " + ", ".join(given) if given else " by the libraries' own setting"
        return replace(choice, threads=threads, kept_by=", ".join(kept) + source)

    def _limits(self, threads: int) -> dict[str, int]:
        """The size of each user API's pools (openmp, blas): ``threads``, or smaller where auto keeps them."""
        if self.setting != AUTO:
            return {api: threads for api in {"openmp", "blas", *self._caps}}
        return {api: min(threads, cap) for api, cap in self._caps.items()}
