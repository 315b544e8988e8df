"""Load job configs: merge YAML files, apply key=value overrides, interpolate, then validate."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainyard.errors import ConfigurationError

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from pydantic import ValidationError

    from trainyard.settings import Settings

OVERRIDES = "command-line overrides"


class Layer:
    """One source of config values (a file or the overrides), its raw content, and the keys it removes."""

    def __init__(self, origin: str, content: DictConfig | None, removals: tuple[str, ...] = ()) -> None:
        self.origin = origin
        self.content = content  # None: the one source of a whole document, it defines every value
        self.removals = removals  # dotted keys given as ~key: dropped from what the layers before set

    def defines(self, path: tuple[str | int, ...]) -> bool:
        """Whether this layer sets the value at ``path``, or replaces a parent of it with a non-mapping.

        A mapping merges into the one before it, so a layer that only sets ``job.searcher.KIND`` does
        not define ``job.searcher.sampler``: the file that wrote ``sampler`` does.
        """
        from omegaconf import DictConfig, OmegaConf

        if self.content is None:
            return True
        for depth in range(len(path), 0, -1):
            key = ".".join(str(part) for part in path[:depth])
            found = OmegaConf.select(self.content, key, default=_ABSENT, throw_on_resolution_failure=False)
            if found is not _ABSENT and (depth == len(path) or not isinstance(found, DictConfig)):
                return True
        return False


_ABSENT = object()


def load_layers(paths: list[str], overrides: list[str]) -> list[Layer]:
    """Read every file, then parse the overrides, as layers to merge in order."""
    layers = [_load_file(path) for path in paths]
    if overrides:
        layers.append(_parse_overrides(overrides))
    return layers


def resolve(layers: list[Layer]) -> dict[str, Any]:
    """Merge the layers in order and resolve interpolations (``${oc.env:VAR}``, ``${job.x}``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    merged: Any = OmegaConf.create()
    for layer in layers:
        for removed in layer.removals:
            _remove(merged, removed, layer.origin)
        try:
            merged = OmegaConf.merge(merged, layer.content)
        except (OmegaConfBaseException, TypeError, ValueError) as error:
            raise ConfigurationError(
                f"{layer.origin}: cannot merge it over the files before it: {_first_line(error)} "
                "(a list cannot replace a mapping, nor a mapping a list)"
            ) from None
    try:
        data = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        origin = _origin(layers, tuple(str(key).split("."))) if key else "config"
        where = f" at {key}" if key else ""
        raise ConfigurationError(f"{origin}: cannot resolve the value{where}: {_first_line(error)}") from None
    if not isinstance(data, dict):
        raise ConfigurationError("the config must be a mapping with a top-level 'job' key")
    return data  # type: ignore[return-value]


def load_settings(
    paths: list[str], overrides: list[str] | None = None, *, allow_import_paths: bool = False
) -> Settings:
    """Files merged in order, then overrides, then interpolation, validated into Settings."""
    layers = load_layers(list(paths), list(overrides or []))
    return validate(resolve(layers), layers, allow_import_paths=allow_import_paths)


def validate(data: dict[str, Any], layers: list[Layer], *, allow_import_paths: bool = False) -> Settings:
    """Validate resolved data; every problem is reported with its origin, field path and value.

    Without ``allow_import_paths`` (the default, and always so for configs a service or the watcher
    runs), validation imports and instantiates only what registered names designate.
    """
    from pydantic import ValidationError

    from trainyard.settings import Settings

    _refuse_instantiation_keys(data, (), layers)
    try:
        return Settings.model_validate(data, context={"allow_import_paths": allow_import_paths})
    except ValidationError as error:
        raise ConfigurationError(format_validation_error(error, data, layers)) from None


INSTANTIATION_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})


def _refuse_instantiation_keys(node: Any, path: tuple[str | int, ...], layers: list[Layer]) -> None:
    """Refuse Hydra's ``_target_`` (and its companions) anywhere: a config never names code to build."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        here = (*path, key)
        if key in INSTANTIATION_KEYS:
            dotted = ".".join(str(part) for part in here)
            raise ConfigurationError(
                f"{_origin(layers, here)}: {dotted}: Trainyard never builds objects named in a config "
                f"(Hydra's {key}); name a component by its KIND and an estimator by its registered name"
            )
        _refuse_instantiation_keys(value, here, layers)


def format_validation_error(error: ValidationError, data: dict[str, Any], layers: list[Layer]) -> str:
    """One line per problem: ``origin: field.path = value: what was expected``."""
    lines = [f"invalid config ({error.error_count()} problem{'s' * (error.error_count() > 1)}):"]
    for problem in error.errors(include_url=False):
        path = _data_path(data, problem["loc"])
        dotted = ".".join(str(part) for part in path) or "(top level)"
        # a KIND typo is the KIND's layer's, not that of an override under the same component
        origin = _origin(layers, (*path, "KIND") if problem["type"] == "union_tag_invalid" else path)
        message = _explain(problem, data, path)
        whole_section = isinstance(problem["input"], dict) and problem["type"] == "value_error"
        value = (
            ""
            if problem["type"] in {"missing", "extra_forbidden"} or whole_section
            else f" = {_short(problem['input'])}"
        )
        if problem["type"] == "union_tag_invalid":
            dotted, value = f"{dotted}.KIND", f" = {_short(problem['ctx']['tag'])}"
        if problem["type"] == "extra_forbidden" and origin != OVERRIDES and layers[-1].origin == OVERRIDES:
            message += f" (to drop it on the command line: ~{dotted})"
        lines.append(f"  {origin}: {dotted}{value}: {message}")
    return "\n".join(lines)


def _explain(problem: Any, data: dict[str, Any], path: tuple[str | int, ...]) -> str:
    kind = problem["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        valid = _valid_keys(data, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if path[-1] in {"direction", "directions"}:
            hint = " (each metric has its own direction, rmse minimized, r2 maximized: list the metrics)"
        moved = _SWEEPER_KEYS.get(str(path[-1])) if len(path) > 1 and path[-2] == "searcher" else None
        if moved:
            hint = f" (Hydra's sweeper key: here it is {moved})"
        return f"unknown key{hint}; valid keys here: {', '.join(valid)}" if valid else "unknown key"
    if kind in {"union_tag_not_found", "union_tag_invalid"}:
        kinds = ", ".join(_kinds_at(data, path))
        return f"{'unknown' if kind == 'union_tag_invalid' else 'missing'} KIND; expected one of: {kinds}"
    message = str(problem["msg"])
    if kind == "literal_error" and isinstance(problem["input"], str):
        allowed = re.findall(r"'([^']*)'", str(problem.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(problem["input"], allowed, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    return message.removeprefix("Value error, ")


# Keys of Hydra's Optuna sweeper block, pasted under the searcher, and where Trainyard has them.
_SWEEPER_KEYS = {
    "study_name": "job.study.name",
    "storage": "job.study.storage",
    "params": "job.searcher.space",
}


def _valid_keys(data: dict[str, Any], path: tuple[str | int, ...]) -> list[str]:
    """Field names (aliases) accepted at ``path``, found by walking the models along the data."""
    from pydantic import BaseModel

    model = _model_of(_annotation_at(data, path), _node_at(data, path)) if path else _settings_model()
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _kinds_at(data: dict[str, Any], path: tuple[str | int, ...]) -> list[str]:
    """The KIND values accepted at ``path`` (a component family)."""
    return sorted(
        str(candidate.model_fields["KIND"].default)
        for candidate in _models_in(_annotation_at(data, path))
        if "KIND" in candidate.model_fields
    )


def _annotation_at(data: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    """The type annotation of the field at ``path`` (list items resolve to the item type)."""
    import typing

    model: Any = _settings_model()
    annotation: Any = None
    node: Any = data
    for part in path:
        if isinstance(part, int):
            args = typing.get_args(annotation)
            annotation = args[0] if args else None
            node = node[part] if isinstance(node, list) and part < len(node) else None
            model = _model_of(annotation, node)
            continue
        field = _field(model, part)
        if field is None:
            return None
        annotation = field.annotation
        node = node.get(part) if isinstance(node, dict) else None
        model = _model_of(annotation, node)
    return annotation


def _node_at(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _settings_model() -> Any:
    from trainyard.settings import Settings

    return Settings


def _field(model: Any, key: str | int) -> Any:
    for name, field in getattr(model, "model_fields", {}).items():
        if key in (name, field.alias):
            return field
    return None


def _models_in(annotation: Any) -> list[Any]:
    """The model classes an annotation may designate (members of unions, metadata stripped)."""
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[Any] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _model_of(annotation: Any, node: Any) -> Any:
    """The model class an annotation designates for this node (choosing union members by KIND)."""
    candidates = _models_in(annotation)
    if len(candidates) == 1:
        return candidates[0]
    kind = node.get("KIND") if isinstance(node, dict) else None
    for candidate in candidates:
        field = candidate.model_fields.get("KIND")
        if field is not None and field.default == kind:
            return candidate
    return None


def _data_path(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the union tags pydantic inserts in ``loc`` (``model.sklearn.params`` -> ``model.params``)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("KIND") == part:
            continue
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if part == "KIND" and isinstance(node, str):  # a bare name given for a component: the name is it
            continue
        path.append(part)
        node = (
            node.get(part)
            if isinstance(node, dict)
            else (
                node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None
            )
        )
    return tuple(path)


def _origin(layers: list[Layer], path: tuple[str | int, ...]) -> str:
    """The last layer that sets ``path``: the file (or the overrides) the value came from."""
    for layer in reversed(layers):
        if layer.defines(path):
            return layer.origin
    return layers[-1].origin if layers else "config"


def _load_file(path: str) -> Layer:
    import yaml
    from omegaconf import DictConfig, OmegaConf

    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"{path}: config file not found")
    try:
        content = OmegaConf.load(file)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigurationError(f"{path}: invalid YAML{where}: {_yaml_problem(error)}") from None
    except Exception as error:
        raise ConfigurationError(f"{path}: cannot read config: {_first_line(error)}") from None
    if not isinstance(content, DictConfig):
        raise ConfigurationError(f"{path}: expected a mapping with a top-level 'job' key, got a list")
    return Layer(path, content)


def _parse_overrides(overrides: list[str]) -> Layer:
    """``dotted.key=value`` overrides, and ``~dotted.key`` removals (Hydra's syntax)."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    removals = []
    assignments = []
    for override in overrides:
        if override.startswith("~"):
            key = override[1:]
            if not key or "=" in key or key != key.strip():
                raise ConfigurationError(f"override {override!r}: expected ~dotted.key (to remove that key)")
            removals.append(key)
            continue
        key, sep, value = override.partition("=")
        if not sep or not key or key != key.strip():
            raise ConfigurationError(f"override {override!r}: expected dotted.key=value, or ~dotted.key")
        if _ends_like_a_key(value):  # a URL such as sqlite:///:memory: is text, not a one-key mapping
            override = f"{key}='{value.strip().replace(chr(39), chr(39) * 2)}'"  # quoted, in its place
        assignments.append(override)
    try:
        return Layer(OVERRIDES, OmegaConf.from_dotlist(assignments), tuple(removals))
    except (OmegaConfBaseException, ValueError, yaml.YAMLError) as error:
        culprit = next((one for one in assignments if not _parses(one)), None)
        where = f"override {culprit!r}" if culprit else OVERRIDES
        problem = _yaml_problem(error) if isinstance(error, yaml.YAMLError) else _first_line(error)
        raise ConfigurationError(f"{where}: {problem}") from None


def _parses(assignment: str) -> bool:
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.from_dotlist([assignment])
    except (OmegaConfBaseException, ValueError, yaml.YAMLError):
        return False
    return True


def _yaml_problem(error: BaseException) -> str:
    """What is wrong in a YAML text, in a line; a tag that builds Python objects says so."""
    import yaml

    problem = str(getattr(error, "problem", None) or error).strip()
    if isinstance(error, yaml.constructor.ConstructorError) and "python/" in problem:
        tag = re.search(r"'tag:yaml.org,2002:([^']*)'", problem)
        named = f"!!{tag.group(1)}" if tag else "a !!python/ tag"
        return f"{named}: YAML tags that build Python objects are not accepted (a config holds plain data)"
    return problem.splitlines()[0] if problem else type(error).__name__


def _ends_like_a_key(value: str) -> bool:
    """Whether YAML would read ``value`` as a mapping only because it ends with a colon.

    ``key=a:`` reads as ``{a: null}`` in YAML: nobody writes a mapping that way on a command line
    (``key={a: 1}`` does), but a URL or a path can end with a colon.
    """
    stripped = value.strip()
    return stripped.endswith(":") and not stripped.startswith(("{", "[", "'", '"', "!"))


def _remove(config: Any, key: str, origin: str) -> None:
    """Drop ``key`` (dotted) from ``config``; an error names it when no file set it."""
    from omegaconf import DictConfig, OmegaConf

    parent_key, _, last = key.rpartition(".")
    parent = OmegaConf.select(config, parent_key, default=None) if parent_key else config
    if not isinstance(parent, DictConfig) or last not in parent:
        raise ConfigurationError(f"{origin}: ~{key}: no such key to remove (the files do not set it)")
    del parent[last]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
