"""The configuration reference: generated from the models, committed up to date, and complete."""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from trainyard.core.estimators import ESTIMATORS
from trainyard.core.metrics import MetricName
from trainyard.core.models import ModelKind
from trainyard.core.signers import SignerKind
from trainyard.core.splitters import SplitterKind
from trainyard.io.alerts import AlertKind
from trainyard.io.readers import ReaderKind
from trainyard.io.registers import RegisterKind
from trainyard.io.savers import SaverKind
from trainyard.jobs.base import Job
from trainyard.jobs.training import TrainingJob
from trainyard.reference import REGENERATE, main, render_reference
from trainyard.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "configuration.md"
FAMILIES = {
    "inputs/targets": ReaderKind,
    "splitter": SplitterKind,
    "model": ModelKind,
    "signer": SignerKind,
    "saver": SaverKind,
    "register": RegisterKind,
    "alerts": AlertKind,
}


@pytest.fixture(scope="module")
def reference() -> str:
    return render_reference()


def _classes(annotation: Any) -> list[type[BaseModel]]:
    """Model classes in an annotation (unions, lists, dicts and Annotated unwrapped)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [found for arg in typing.get_args(annotation) for found in _classes(arg)]


def _reachable() -> list[type[BaseModel]]:
    """Every model class a config can contain, found from Settings."""
    seen: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = [Settings]
    while pending:
        model = pending.pop()
        if model not in seen:
            seen.append(model)
            pending += [c for info in model.model_fields.values() for c in _classes(info.annotation)]
    return seen


def _kind(model: type[BaseModel]) -> str | None:
    info = model.model_fields.get("KIND")
    return info.default if info is not None and isinstance(info.default, str) else None


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    ends = [m.start() for m in re.finditer(rf"\n#{{1,{len(level)}}} ", text) if m.start() > start]
    return text[start : ends[0] if ends else len(text)]


def test_committed_reference_is_up_to_date(reference: str) -> None:
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.is_file() else ""
    if committed != reference:
        diff = difflib.unified_diff(
            committed.splitlines(), reference.splitlines(), "committed", "generated", lineterm=""
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/configuration.md is out of date; regenerate it with:\n  {REGENERATE}\n{shown}")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_kind_of_every_family_is_documented(reference: str, family: str) -> None:
    members = _classes(FAMILIES[family])
    assert members
    for member in members:
        kind = _kind(member)
        assert kind is not None, f"{member.__name__} has no KIND"
        assert f"\n#### `{kind}` — {member.__name__}\n" in reference


def test_every_reachable_component_is_documented(reference: str) -> None:
    for model in _reachable():
        kind = _kind(model)
        if kind is not None:
            assert f"`{kind}` — {model.__name__}\n" in reference, model.__name__
        else:  # documented under its config path, introduced by its docstring
            assert model.__doc__ is not None
            assert model.__doc__.strip().splitlines()[0].replace("``", "`") in reference, model.__name__


def test_every_field_of_the_training_job_is_documented(reference: str) -> None:
    section = _section(reference, "### `training` — TrainingJob")
    assert "`KIND: training`" in section
    for name, info in TrainingJob.model_fields.items():
        if name != "KIND":
            assert f"\n| `{info.alias or name}` |" in section, name


def test_every_field_of_every_kind_is_documented(reference: str) -> None:
    for model in _reachable():
        kind = _kind(model)
        if kind is None:
            continue
        level = "###" if issubclass(model, Job) else "####"
        section = _section(reference, f"{level} `{kind}` — {model.__name__}")
        for name, info in model.model_fields.items():
            if name != "KIND":
                assert f"\n| `{info.alias or name}` |" in section, (model.__name__, name)


def test_estimators_and_metrics_are_listed(reference: str) -> None:
    for name in ESTIMATORS:
        assert f"`{name}`" in reference
    metrics = _section(reference, "## Metric names")
    for name in typing.get_args(MetricName):
        assert re.search(rf"\n\| `{name}` \| (maximized|minimized) \|", metrics), name
    assert "\n| `rmse` | minimized |" in metrics
    assert "\n| `r2` | maximized |" in metrics


def test_links_point_at_headings(reference: str) -> None:
    from trainyard.reference import _anchor

    headings = [line.lstrip("#").strip() for line in reference.splitlines() if line.startswith("#")]
    anchors = [_anchor(heading) for heading in headings]
    assert len(anchors) == len(set(anchors)), "two headings share an anchor"
    for target in re.findall(r"\]\(#([^)]+)\)", reference):
        assert target in anchors, target


def test_main_prints_or_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str], reference: str) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == reference
    output = tmp_path / "configuration.md"
    assert main(["--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == reference
