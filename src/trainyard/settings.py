"""The root of every job config: ``job`` is one of the job kinds, chosen by its ``KIND``."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import Field

from trainyard.core.component import Component
from trainyard.jobs.base import Job
from trainyard.jobs.evaluation import EvaluationJob
from trainyard.jobs.inference import InferenceJob
from trainyard.jobs.preparation import PreparationJob
from trainyard.jobs.promotion import PromotionJob
from trainyard.jobs.training import TrainingJob
from trainyard.jobs.tuning import TuningJob

JobKind = Annotated[
    PreparationJob | TrainingJob | TuningJob | EvaluationJob | PromotionJob | InferenceJob,
    Field(discriminator="KIND"),
]


def job_class(kind: object) -> type[Job] | None:
    """The job class a config's ``job.KIND`` names, before the config is validated (None: no such kind)."""
    for klass in get_args(get_args(JobKind)[0]):
        if kind in get_args(klass.model_fields["KIND"].annotation):
            return klass
    return None


class Settings(Component):
    """A whole config file: the job to run."""

    job: JobKind = Field(description="The job, chosen by its KIND.")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of job configs (for editors that validate YAML)."""
    schema = Settings.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Trainyard job config"
    return schema
