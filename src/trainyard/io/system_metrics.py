"""MLflow's system metrics (CPU, memory, disk, network: ``system/...``) sampled into a run while a
long job works: the switch a job's config has, and a sampler for a run this process did not start
(a tuning job's parent run is opened by its writer process)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

DEFAULT_SECONDS = 10.0


def _switch_or_interval(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, int | float) and value > 0):
        return value
    raise ValueError("expected true, false, or the seconds between samples (a number above 0)")


# false, true (every DEFAULT_SECONDS) or the seconds between samples
SystemMetricsSetting = Annotated[bool | float, BeforeValidator(_switch_or_interval)]
SYSTEM_METRICS_DESCRIPTION = (
    "Log MLflow's system metrics (CPU, memory, disk, network; system/...) on the run while the job "
    "works: true samples them every 10 s, a number every that many seconds."
)


def sampling_seconds(setting: bool | float) -> float | None:
    """The seconds between samples that ``setting`` asks for; None when they are off."""
    if setting is False:
        return None
    return DEFAULT_SECONDS if setting is True else float(setting)


class SystemMetricsSampler:
    """Samples into run ``run_id`` every ``seconds`` from ``start`` until ``stop`` (or the run's end),
    continuing the steps the run has; nothing when ``seconds`` is None."""

    def __init__(self, seconds: float | None, tracking_uri: str) -> None:
        self.seconds = seconds
        self.tracking_uri = tracking_uri
        self._monitor: Any = None

    def start(self, run_id: str) -> None:
        if self.seconds is None or self._monitor is not None:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(
            run_id, sampling_interval=self.seconds, resume_logging=True, tracking_uri=self.tracking_uri
        )
        self._monitor.start()

    def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None

    def __enter__(self) -> SystemMetricsSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
