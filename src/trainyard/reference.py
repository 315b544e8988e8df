"""The configuration reference in Markdown, generated from the pydantic models themselves.

Regenerate the committed copy with ``python -m trainyard.reference --output docs/configuration.md``.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from trainyard.core.estimators import ESTIMATORS, EXTRA_INSTALL_HINT
from trainyard.core.metrics import Metric, MetricName
from trainyard.jobs.base import Job
from trainyard.settings import Settings

REGENERATE = ".venv/bin/python -m trainyard.reference --output docs/configuration.md"
KIND = "KIND"
METRIC_NAMES = "Metric names"
ESTIMATORS_TITLE = "Estimators"
Model = type[BaseModel]


@dataclass
class Family:
    """Component classes that can fill the same config fields, and where they appear."""

    members: tuple[Model, ...]
    paths: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # the kinds of the jobs that have it
    qualified: bool = False  # another family has the same paths: the title names the jobs too

    @property
    def tagged(self) -> bool:
        """A union: the config must name its kind with ``KIND``."""
        return len(self.members) > 1

    @property
    def title(self) -> str:
        paths = ", ".join(f"`{path}`" for path in self.paths)
        return f"{paths} ({', '.join(self.jobs)})" if self.qualified else paths


def render_reference() -> str:
    """The whole reference as Markdown (ends with one newline)."""
    jobs = _job_kinds()
    families = _families(jobs)
    links = _links(jobs, families)
    parts = [_header(jobs, families), _top_level(links), _jobs(jobs, links)]
    parts += ["## Components\n\nThe parts of a job, each under the config path that uses it."]
    parts += [_family(family, links) for family in families]
    parts += [_estimators(), _metric_names()]
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the reference, or write it with ``--output``."""
    parser = argparse.ArgumentParser(prog="python -m trainyard.reference", description=__doc__)
    parser.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    text = render_reference()
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


# -- walking the models -----------------------------------------------------------------------------------


def _job_kinds() -> list[Model]:
    """The job classes ``Settings.job`` accepts."""
    return _models(Settings.model_fields["job"].annotation)


def _fields(model: Model) -> list[tuple[str, FieldInfo]]:
    """``(config key, field)`` pairs; a job lists its own fields before those every job shares."""
    items = list(model.model_fields.items())
    if issubclass(model, Job):
        shared = set(Job.model_fields) - {KIND}
        items = [item for item in items if item[0] not in shared] + [i for i in items if i[0] in shared]
    return [(info.alias or name, info) for name, info in items]


def _families(jobs: list[Model]) -> list[Family]:
    """Every component family reachable from the job kinds, in the order a reader meets them."""
    found: dict[tuple[Model, ...], Family] = {}

    def visit(model: Model, prefix: str, job: str) -> None:
        for key, info in _fields(model):
            for members, suffix in _component_slots(info.annotation, ""):
                path = f"{prefix}.{key}{suffix}"
                family = found.get(members)
                if family is None:
                    family = found[members] = Family(members)
                    family.paths.append(path)
                    for member in members:
                        visit(member, path, job)
                elif path not in family.paths:
                    family.paths.append(path)
                if job not in family.jobs:
                    family.jobs.append(job)

    for job in jobs:
        visit(job, "job", str(_kind(job)))
    families = list(found.values())
    titles = [family.title for family in families]
    for family in families:  # e.g. job.model: a model to fit, or a model to predict with
        family.qualified = titles.count(family.title) > 1
    return families


def _component_slots(annotation: Any, suffix: str) -> list[tuple[tuple[Model, ...], str]]:
    """The model classes an annotation holds, grouped per union, with the path suffix to reach them."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _component_slots(args[0], suffix)
    if _is_model(annotation):
        return [((annotation,), suffix)]
    if _is_union(annotation):
        members = [arg for arg in args if arg is not type(None)]
        models = [_strip(arg) for arg in members]
        if all(_is_model(model) for model in models):
            return [(tuple(models), suffix)]
        return [slot for arg in members for slot in _component_slots(arg, suffix)]
    if origin in (list, tuple, set, frozenset, Sequence):
        return [slot for arg in args if arg is not Ellipsis for slot in _component_slots(arg, f"{suffix}[*]")]
    if origin is dict and len(args) == 2:
        return _component_slots(args[1], f"{suffix}.<name>")
    return []


def _models(annotation: Any) -> list[Model]:
    return [model for members, _ in _component_slots(annotation, "") for model in members]


def _strip(annotation: Any) -> Any:
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _kind(model: Model) -> str | None:
    """The KIND value that selects ``model`` (None when KIND is not a fixed tag)."""
    info = model.model_fields.get(KIND)
    return info.default if info is not None and isinstance(info.default, str) else None


# -- anchors and headings ---------------------------------------------------------------------------------


def _anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _member_heading(model: Model) -> str:
    kind = _kind(model)
    return f"`{kind}` — {model.__name__}" if kind is not None else model.__name__


def _links(jobs: list[Model], families: list[Family]) -> dict[Model, str]:
    """Each model class -> the anchor of the section that documents it."""
    links = {job: _anchor(_member_heading(job)) for job in jobs}
    for family in families:
        for member in family.members:
            has_heading = family.tagged or _kind(member) is not None
            links.setdefault(member, _anchor(_member_heading(member) if has_heading else family.title))
    return links


# -- sections ---------------------------------------------------------------------------------------------


def _header(jobs: list[Model], families: list[Family]) -> str:
    contents = [
        "- [Top level](#top-level)",
        "- [Jobs](#jobs): " + ", ".join(f"[{_kind(job)}](#{_anchor(_member_heading(job))})" for job in jobs),
        "- [Components](#components): "
        + ", ".join(f"[`{family.paths[0]}`](#{_anchor(family.title)})" for family in families),
        f"- [{ESTIMATORS_TITLE}](#{_anchor(ESTIMATORS_TITLE)})",
        f"- [{METRIC_NAMES}](#{_anchor(METRIC_NAMES)})",
    ]
    return f"""<!-- Generated from the pydantic models by src/trainyard/reference.py: do not edit by hand. -->

# Configuration reference

> This file is generated from the code. After changing a config model, regenerate it with
> `{REGENERATE}` (a test fails while it is out of date).

A config file is YAML with one top-level key, `job`. Every mapping is checked: a key that is not
listed here is an error, and so is a value of the wrong type. Where a field can hold several kinds of
component, the mapping's `KIND` key chooses one. Keys are written as shown in the *Field* column.

{chr(10).join(contents)}"""


def _top_level(links: dict[Model, str]) -> str:
    return f"## Top level\n\n{_doc(Settings)}\n\n{_table(Settings, links)}"


def _jobs(jobs: list[Model], links: dict[Model, str]) -> str:
    job_union = len(jobs) > 1
    sections = ["## Jobs\n\nThe `job` mapping; its `KIND` chooses the job."]
    for job in jobs:
        note = f"`{KIND}: {_kind(job)}`" + (
            "" if job_union else " (may be left out: the only job kind so far)"
        )
        sections.append(f"### {_member_heading(job)}\n\n{_doc(job)}\n\n{note}.\n\n{_table(job, links)}")
    return "\n\n".join(sections)


def _family(family: Family, links: dict[Model, str]) -> str:
    lines = [f"### {family.title}"]
    kinds = [_kind(member) for member in family.members]
    if family.tagged:
        names = ", ".join(
            f"[`{kind}`](#{links[member]})" for kind, member in zip(kinds, family.members, strict=True)
        )
        lines.append(f"One of {len(kinds)} kinds, chosen by `{KIND}` (required): {names}.")
    elif kinds[0] is not None:
        lines.append(f"One kind so far: `{KIND}: {kinds[0]}` (may be left out).")
    for member in family.members:
        if family.tagged or _kind(member) is not None:
            lines.append(f"#### {_member_heading(member)}")
        lines += [_doc(member), _table(member, links)]
    return "\n\n".join(lines)


def _estimators() -> str:
    by_module: dict[str, list[str]] = {}
    for name, module in ESTIMATORS.items():
        by_module.setdefault(module, []).append(name)
    lines = [
        f"## {ESTIMATORS_TITLE}",
        "Names accepted by `model.estimator` (`KIND: sklearn`). An import path `package.module:Class` "
        "(a scikit-learn-compatible estimator class) is accepted too in a run started with "
        "`trainyard run --allow-import-paths` or `TRAINYARD_ALLOW_IMPORT_PATHS=1`, never otherwise: "
        "see [What a config may run](training.md#what-a-config-may-run).",
        "| Module | Estimators |\n| --- | --- |",
    ]
    rows = []
    for module, names in by_module.items():
        extra = "" if module.split(".")[0] == "sklearn" else f" ({EXTRA_INSTALL_HINT})"
        rows.append(f"| `{module}`{_cell(extra)} | {', '.join(f'`{name}`' for name in names)} |")
    lines[-1] += "\n" + "\n".join(rows)
    return "\n\n".join(lines)


def _metric_names() -> str:
    rows = ["| Name | Better when | For | Uses probabilities |", "| --- | --- | --- | --- |"]
    for name in get_args(MetricName):
        metric = Metric(KIND=name)
        task = "classifiers" if metric.for_classifiers else "regressors"
        proba = "yes" if metric.needs_proba else "no"
        rows.append(f"| `{name}` | {metric.direction}d | {task} | {proba} |")
    return "\n\n".join(
        [
            f"## {METRIC_NAMES}",
            "The values of a metric's `KIND`. An item of `metrics` may be the bare name "
            "(`metrics: [r2, rmse]`) or a mapping (`{KIND: f1, average: macro}`); every metric must suit "
            "the model (a classifier or a regressor).",
            "\n".join(rows),
        ]
    )


# -- tables and cells -------------------------------------------------------------------------------------


def _table(model: Model, links: dict[Model, str]) -> str:
    rows = ["| Field | Type | Required | Default | Description |", "| --- | --- | --- | --- | --- |"]
    for key, info in _fields(model):
        if key == KIND and _kind(model) is not None:
            continue  # the tag is in the heading
        required = info.is_required()
        default = "" if required else f"`{_yaml(_default(info))}`"
        cells = [
            f"`{key}`",
            _type(info.annotation, links, metadata=info.metadata),
            "yes" if required else "no",
            default,
            _markdown(info.description or ""),
        ]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) if len(rows) > 2 else "No fields besides `KIND`."


def _type(annotation: Any, links: dict[Model, str], metadata: Sequence[Any] = ()) -> str:
    """A readable type: backticked YAML names, links to components, constraints in parentheses."""
    text = _type_name(annotation, links)
    members = [a for a in get_args(annotation) if a is not type(None)] if _is_union(annotation) else []
    texts = members or [_strip(annotation)]  # a string, or an optional one
    unit = "character" if all(member in (str, SecretStr) for member in texts) else "item"
    limits = [limit for limit in (_constraint(item, unit) for item in metadata) if limit]
    return f"{text} ({', '.join(limits)})" if limits else text


def _type_name(annotation: Any, links: dict[Model, str]) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type(args[0], links, metadata=args[1:])
    if origin is Literal and args == get_args(MetricName):
        return f"a [metric name](#{_anchor(METRIC_NAMES)})"
    if origin is Literal or _is_union(annotation):
        return _or(_alternatives(annotation, links))
    if origin in (list, tuple, set, frozenset, Sequence):
        return f"list of {_grouped(_type_name(args[0], links))}"
    if origin is dict:
        return f"map of {_type_name(args[0], links)} to {_grouped(_type_name(args[1], links))}"
    if _is_model(annotation):
        return f"[{annotation.__name__}](#{links[annotation]})"
    if annotation is Any:
        return "any"
    return f"`{_SCALARS.get(annotation, getattr(annotation, '__name__', str(annotation)))}`"


_SCALARS: dict[Any, str] = {
    str: "string",
    SecretStr: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _alternatives(annotation: Any, links: dict[Model, str]) -> list[str]:
    """The choices of a union or Literal, flattened (``Literal['a', 'b'] | None`` -> a, b, null)."""
    if get_origin(annotation) is Literal:
        return [f"`{_yaml(value)}`" for value in get_args(annotation)]
    if _is_union(annotation):
        return [choice for arg in get_args(annotation) for choice in _alternatives(arg, links)]
    return [_type_name(annotation, links)]


def _or(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _grouped(text: str) -> str:
    return f"({text})" if " or " in text else text


def _constraint(item: Any, unit: str) -> str:
    """``Gt(0)`` -> ``> 0``, ``MinLen(1)`` -> ``at least 1 item``; other metadata -> ``""``."""
    if isinstance(item, annotated_types.Gt):
        return f"> {item.gt}"
    if isinstance(item, annotated_types.Ge):
        return f">= {item.ge}"
    if isinstance(item, annotated_types.Lt):
        return f"< {item.lt}"
    if isinstance(item, annotated_types.Le):
        return f"<= {item.le}"
    if isinstance(item, annotated_types.MinLen):
        return f"at least {item.min_length} {unit}{'s' * (item.min_length != 1)}"
    if isinstance(item, annotated_types.MaxLen):
        return f"at most {item.max_length} {unit}s"
    return ""


def _default(info: FieldInfo) -> Any:
    """The default as plain data; a component default shows its KIND and the keys it changes."""
    return _plain(info.get_default(call_default_factory=True, validated_data={}))


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        kind = getattr(value, KIND, None)
        return {KIND: kind, **data} if isinstance(kind, str) else data
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _yaml(value: Any) -> str:
    """``value`` as one line of flow-style YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    return text.removesuffix("...\n").strip()


def _doc(model: Model) -> str:
    return _markdown(inspect.cleandoc(model.__dict__.get("__doc__") or ""))


def _markdown(text: str) -> str:
    """Docstring markup to Markdown: ``code`` -> `code`."""
    return text.replace("``", "`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    sys.exit(main())
