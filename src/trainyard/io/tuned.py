"""Read the best parameters of a finished tuning run or study (for ``model.params_from``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainyard.errors import ResourceNotFoundError

if TYPE_CHECKING:
    from trainyard.core.models import TunedParams

BEST_PARAMS_ARTIFACT = "best_params.json"


def load_tuned_params(source: TunedParams, tracking_uri: str) -> dict[str, Any]:
    """The tuned parameters ``source`` points at; ResourceNotFoundError names what is missing."""
    if source.run_id is not None:
        return _from_run(source.run_id)
    return _from_study(str(source.study), source.storage, tracking_uri)


def _from_run(run_id: str) -> dict[str, Any]:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        raise ResourceNotFoundError(
            f"model.params_from.run_id: no MLflow run {run_id!r} in this store"
        ) from None
    try:
        best = mlflow.artifacts.load_dict(f"runs:/{run_id}/{BEST_PARAMS_ARTIFACT}")
    except (MlflowException, OSError):
        raise ResourceNotFoundError(
            f"model.params_from.run_id: run {run_id!r} ({run.info.run_name}) has no {BEST_PARAMS_ARTIFACT}: "
            "give the parent run of a finished tuning job"
        ) from None
    return dict(best["params"])


def _from_study(name: str, storage: str | None, tracking_uri: str) -> dict[str, Any]:
    import optuna

    from trainyard.io.studies import StudyStorage

    where = StudyStorage(name=name, storage=storage)
    location = where.location(tracking_uri)
    local = location.removeprefix("sqlite:///") if location.startswith("sqlite:///") else location
    if "://" not in local and not Path(local).exists():  # reading must not create an empty storage
        raise ResourceNotFoundError(f"model.params_from.study: no study storage at {location!r}")
    opened = where.open(tracking_uri)
    try:
        study = optuna.load_study(study_name=name, storage=opened)
    except KeyError:
        known = optuna.get_all_study_names(opened)
        raise ResourceNotFoundError(
            f"model.params_from.study: no study {name!r} in {where.location(tracking_uri)}; "
            f"studies there: {', '.join(known) or 'none'}"
        ) from None
    if len(study.directions) > 1:
        from trainyard.io.studies import parent_attr

        parent = study.user_attrs.get(parent_attr(tracking_uri))
        if not parent:
            raise ResourceNotFoundError(
                f"study {name!r} has several objectives and no tuning run to pick the best"
            )
        return _from_run(str(parent))
    try:
        return dict(study.best_trial.params)
    except ValueError:
        raise ResourceNotFoundError(
            f"model.params_from.study: study {name!r} has no completed trial"
        ) from None
