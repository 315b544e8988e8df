"""Read the best parameters of a finished tuning run or study (for ``model.params_from``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainyard.errors import ConfigurationError, ResourceNotFoundError
from trainyard.io.tracking import LoggedConfigError, logged_config
from trainyard.tuning.studies import StudyStorage, local_file, parent_attr

if TYPE_CHECKING:
    from trainyard.core.models import TunedParams

BEST_PARAMS_ARTIFACT = "best_params.json"


@dataclass(frozen=True)
class Tuned:
    """What a tuning run found: the best parameters, and the model config they were tuned with."""

    params: dict[str, Any]
    model: dict[str, Any] | None = None  # the tuning job's ``model`` section (None: not recorded)

    @property
    def fixed_params(self) -> dict[str, Any]:
        """The parameters the tuning job set without searching them (its ``model.params``)."""
        return dict((self.model or {}).get("params") or {})


def load_tuned_params(source: TunedParams, tracking_uri: str) -> Tuned:
    """The tuned parameters ``source`` points at; ResourceNotFoundError names what is missing."""
    if source.run_id is not None:
        return _from_run(source.run_id)
    return _from_study(str(source.study), source.storage, tracking_uri)


def _model_of_run(run_id: str) -> dict[str, Any] | None:
    """The ``model`` section of the config a tuning run logged (None when it has none)."""
    try:
        config = logged_config(run_id)
    except LoggedConfigError:
        return None
    job = config.get("job")
    model = job.get("model") if isinstance(job, dict) else None
    return model if isinstance(model, dict) else None


def _from_run(run_id: str) -> Tuned:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        raise ResourceNotFoundError(
            f"job.model.params_from.run_id: no MLflow run {run_id!r} in this store"
        ) from None
    try:
        best = mlflow.artifacts.load_dict(f"runs:/{run_id}/{BEST_PARAMS_ARTIFACT}")
    except (MlflowException, OSError):
        raise ResourceNotFoundError(
            f"job.model.params_from.run_id: run {run_id!r} ({run.info.run_name}) has no {BEST_PARAMS_ARTIFACT}: "
            "give the parent run of a finished tuning job"
        ) from None
    return Tuned(dict(best["params"]), _model_of_run(run_id))


def _from_study(name: str, storage: str | None, tracking_uri: str) -> Tuned:
    import optuna
    from pydantic import ValidationError

    try:
        where = StudyStorage(name=name, storage=storage)
    except ValidationError as error:
        problem = str(error.errors()[0]["msg"]).removeprefix("Value error, ")
        raise ConfigurationError(f"job.model.params_from.storage = {storage!r}: {problem}") from None
    location = where.location(tracking_uri)
    local = local_file(location)
    if local is not None and not local.exists():  # reading must not create an empty storage
        raise ResourceNotFoundError(f"job.model.params_from.study: no study storage at {location!r}")
    opened = where.open(tracking_uri)
    try:
        study = optuna.load_study(study_name=name, storage=opened)
    except KeyError:
        known = optuna.get_all_study_names(opened)
        raise ResourceNotFoundError(
            f"job.model.params_from.study: no study {name!r} in {where.location(tracking_uri)}; "
            f"studies there: {', '.join(known) or 'none'}"
        ) from None

    parent = study.user_attrs.get(parent_attr(tracking_uri))
    if len(study.directions) > 1:
        if not parent:
            raise ResourceNotFoundError(
                f"job.model.params_from.study: study {name!r} has several objectives and no tuning run to "
                "pick the best"
            )
        return _from_run(str(parent))
    try:
        best = dict(study.best_trial.params)
    except ValueError:
        raise ResourceNotFoundError(
            f"job.model.params_from.study: study {name!r} has no completed trial"
        ) from None
    return Tuned(best, _model_of_run(str(parent)) if parent else None)
