"""The base every configurable component derives from: frozen, strict, discriminated by KIND."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class Component(BaseModel):
    """A piece of a job described in YAML: immutable, and every key must be a known field."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def default_kind(kind: str) -> BeforeValidator:
    """For a family field whose default is one kind: a mapping without ``KIND`` is that kind's.

    ``sampler: {seed: 55}`` is then the default sampler with a seed, as the docs say it is.
    """

    def fill(value: Any) -> Any:
        if isinstance(value, dict) and "KIND" not in value:
            return {"KIND": kind, **value}
        return value

    return BeforeValidator(fill)
