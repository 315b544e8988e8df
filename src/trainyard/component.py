"""The base every configurable component derives from: frozen, strict, discriminated by KIND."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Component(BaseModel):
    """A piece of a job described in YAML: immutable, and every key must be a known field."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
