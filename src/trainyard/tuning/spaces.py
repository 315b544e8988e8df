"""Search spaces: ``job.searcher.space`` parsed into dimensions that become Optuna distributions.

A parameter's space is one of:

- a list: categorical choices, ``[gini, entropy]``;
- a mapping: ``{type: int|float, low, high, step, log}`` or ``{type: categorical, choices: [...]}``;
- an expression of the Hydra Optuna sweeper, meaning what it means there (hydra-optuna-sweeper 1.3,
  ``create_optuna_distribution_from_override``):

  - ``choice(a, b, ...)``: categorical; values read as YAML scalars (int, float, bool, null, string).
  - ``range(start, stop, step=1)`` (``range(stop)`` starts at 0): stepped, and ``stop`` is INCLUDED when
    a step lands on it (it is Optuna's ``high``), unlike Python's range. Int if start, stop and step
    are all ints, float if any is a float.
  - ``interval(low, high)``: always float, even ``interval(1, 10)`` (Hydra casts its bounds to float);
    ``int(interval(1, 10))`` gives ints. ``int(...)`` and ``float(...)`` cast ranges too.
  - ``tag(log, X)``: log scale. Hydra honours it on ``interval`` only and silently drops it on ``range``;
    here it also works on an int ``range`` of step 1, and is an error on a float range (a log scale with
    a step, which Optuna refuses) or on ``choice``. Tags other than ``log`` are errors.

- ``a,b,c``: a comma list, Hydra's sweep over choices (``32,48,64`` is ``choice(32, 48, 64)``); a
  fixed string that holds a comma is written as a one-item list, ``["a,b"]``.
- a plain number, string or boolean: a fixed value, kept as a one-choice categorical so that every
  trial records it. A bare null is refused (an empty YAML value is more likely a slip): write ``[null]``.
  A string that starts like a call, ``name(``, is read as an expression, so ``rnge(1,2)`` is an error.

A stepped range whose ``high`` is off the step grid is cut down to its last step, as Optuna does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from trainyard.core.models import SklearnModel, check_params

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

Kind = Literal["int", "float", "categorical"]
Choice = None | bool | int | float | str
_SCALARS = (type(None), bool, int, float, str)
_EXPECTED = (
    "expected a list of choices, a {type: int|float|categorical, ...} mapping, or an expression like "
    "choice(1,2), range(1,10), interval(0.1,1.0), tag(log, interval(...))"
)
_CALL_START = re.compile(r"\s*[A-Za-z_]\w*\s*\(")
_CALL = re.compile(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*", re.DOTALL)
_KEYWORD = re.compile(r"\s*([A-Za-z_]\w*)\s*=(.*)", re.DOTALL)
_MAX_STEPS = 10**15  # a float range with more steps is continuous (and Optuna fails on it)
_DIGITS = r"\d+(?:_\d+)*"
_INT = re.compile(rf"[+-]?{_DIGITS}")
_FLOAT = re.compile(rf"[+-]?(?:(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:e[+-]?\d+)?|inf|nan)", re.I)


def _number(name: str, value: object, kind: str) -> int | float:
    """``value`` as a finite int or float; ints accept whole floats (1e3) and floats accept ints."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            if math.isfinite(value) and (kind == "float" or float(value).is_integer()):
                return int(value) if kind == "int" else float(value)
        except OverflowError:  # an int beyond float's range
            pass
    raise ValueError(f"{name} must be a finite {'whole ' if kind == 'int' else ''}number, got {value!r}")


def _exact(number: int | float) -> Fraction:
    """The decimal as written (0.1 is 1/10, not the nearest binary float), so that steps add up exactly."""
    return Fraction(str(number))


def _steps(low: int | float, high: int | float, step: int | float) -> int:
    return int((_exact(high) - _exact(low)) // _exact(step))


def on_step(value: float, low: float, high: float, step: float) -> float:
    """The point ``low + k * step`` of a stepped float range nearest ``value``, as ``grid_values`` gives it.

    Optuna's samplers compute that point in binary floats (0.001 + 8 * 0.001 is 0.009000000000000001);
    here it is the float nearest the exact decimal, 0.009, with as many decimals as ``low`` and ``step``.
    """
    k = round((Fraction(value) - _exact(low)) / _exact(step))
    k = min(max(k, 0), _steps(low, high, step))
    return float(_exact(low) + k * _exact(step))


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: an int or float range (stepped or log-scaled) or categorical choices."""

    kind: Kind
    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    log: bool = False
    choices: tuple[Choice, ...] = ()

    def __post_init__(self) -> None:
        numeric = (self.low, self.high, self.step)
        if self.kind == "categorical":
            if any(value is not None for value in numeric) or self.log:
                raise ValueError("categorical choices take no low, high, step or log")
            if isinstance(self.choices, str | bytes | Mapping) or not isinstance(self.choices, Iterable):
                raise ValueError(f"choices must be a list, got {self.choices!r}")
            choices = tuple(self.choices)
            if not choices:
                raise ValueError("choices are empty: give at least one value")
            for choice in choices:
                if not isinstance(choice, _SCALARS):
                    raise ValueError(f"choices must be numbers, strings, booleans or null, got {choice!r}")
            if len({(type(choice), choice) for choice in choices}) < len(choices):
                raise ValueError(f"choices repeat a value: {list(choices)}")
            object.__setattr__(self, "choices", choices)
            return
        if self.kind not in ("int", "float"):
            raise ValueError(f"unknown type {self.kind!r}: expected int, float or categorical")
        if self.choices or self.low is None or self.high is None:
            raise ValueError(f"{self.kind} ranges take low and high (and optional step and log)")
        if not isinstance(self.log, bool):
            raise ValueError(f"log must be true or false, got {self.log!r}")
        low, high = _number("low", self.low, self.kind), _number("high", self.high, self.kind)
        step = None if self.step is None else _number("step", self.step, self.kind)
        step = 1 if step is None and self.kind == "int" else step
        if low > high:
            raise ValueError(f"low ({low}) must not be above high ({high})")
        if step is not None and step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        if self.log and low <= 0:
            raise ValueError(f"a log scale needs low > 0, got low {low}")
        if self.log and step is not None and (self.kind == "float" or step != 1):
            raise ValueError("a log scale cannot have a step (Optuna refuses it): drop step or log")
        if step is not None and self.kind == "float" and _steps(low, high, step) > _MAX_STEPS:
            raise ValueError(f"step {step} is too fine for [{low}, {high}]: drop it for a continuous range")
        if step is not None:  # high cut down to the last step, exactly
            high = (int if self.kind == "int" else float)(
                _exact(low) + _steps(low, high, step) * _exact(step)
            )
        for name, value in (("low", low), ("high", high), ("step", step)):
            object.__setattr__(self, name, value)

    @property
    def fixed(self) -> bool:
        """Whether only one value can be drawn (a plain scalar in the config)."""
        return self.kind == "categorical" and len(self.choices) == 1

    def to_optuna(self) -> BaseDistribution:
        """The equivalent Optuna distribution."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution(self.choices)
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_count(self) -> int:
        """How many values ``grid_values`` gives, without listing them."""
        if self.kind == "categorical":
            return len(self.choices)
        if self.step is None:
            raise ValueError(f"a grid needs a step or explicit choices, got {self.describe()}")
        assert self.low is not None and self.high is not None
        return _steps(self.low, self.high, self.step) + 1

    def grid_values(self) -> list[Choice]:
        """Every value of an exhaustive grid: the choices, or low to high (both included) by step."""
        count = self.grid_count()
        if self.kind == "categorical":
            return list(self.choices)
        assert self.low is not None and self.step is not None
        low, step, cast = _exact(self.low), _exact(self.step), int if self.kind == "int" else float
        return [cast(low + i * step) for i in range(count)]

    def describe(self) -> str:
        """A short reading for messages, e.g. ``int in [3, 12]`` or ``float in [0.0001, 0.1] log``."""
        if self.kind == "categorical":
            return f"fixed {self.choices[0]!r}" if self.fixed else f"one of {list(self.choices)!r}"
        text = f"{self.kind} in [{self.low}, {self.high}]"
        if self.step is not None and not (self.kind == "int" and self.step == 1):
            text += f" step {self.step}"
        return text + " log" if self.log else text


def _split(text: str) -> list[str]:
    """The top-level comma-separated arguments of a call, minding parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote or char in "'\"":
            quote = "" if char == quote else quote or char
        elif char in "()":
            depth += 1 if char == "(" else -1
            if depth < 0:
                raise ValueError("unbalanced parentheses")
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quote or depth:
        raise ValueError("unbalanced quotes or parentheses")
    parts.append(text[start:])
    return [] if len(parts) == 1 and not parts[0].strip() else parts


def _scalar(text: str) -> Choice:
    """A YAML-like scalar: int, float, bool, null, or a quoted or plain string."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if not text or any(char in text for char in "()[]{}=,'\""):
        raise ValueError(f"cannot read the value {text!r}")
    if text.lower() in ("null", "~", "true", "false"):
        return None if text.lower() in ("null", "~") else text.lower() == "true"
    if _INT.fullmatch(text):
        return int(text)
    return float(text) if _FLOAT.fullmatch(text) else text


def _arguments(function: str, parts: list[str], names: tuple[str, ...]) -> dict[str, int | float]:
    """Positional or keyword numeric arguments by name, e.g. ``range(0.9, 1.7, step=0.1)``."""
    values: dict[str, int | float] = {}
    for position, part in enumerate(parts):
        keyword = _KEYWORD.fullmatch(part)
        name = keyword.group(1) if keyword else names[position] if position < len(names) else "?"
        if name not in names or name in values:
            raise ValueError(f"{function}() takes ({', '.join(names)}), got {part.strip()!r}")
        value = _scalar(keyword.group(2) if keyword else part)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{function}() takes numbers, got {part.strip()!r}")
        values[name] = value
    return values


def _expression(text: str) -> Dimension:
    call = _CALL.fullmatch(text)
    if not call:
        raise ValueError(f"not a complete call, check its parentheses; {_EXPECTED}")
    function, parts = call.group(1), _split(call.group(2))
    if function == "choice":
        if not parts:
            raise ValueError("choice() needs at least one value")
        return Dimension("categorical", choices=tuple(_scalar(part) for part in parts))
    if function == "range":
        values = _arguments("range", parts, ("start", "stop", "step"))
        if "stop" not in values and "start" in values:  # range(stop) counts from 0, as in Python
            values["stop"], values["start"] = values["start"], 0
        if "stop" not in values:
            raise ValueError("range() needs at least a stop")
        start, stop, step = values.get("start", 0), values["stop"], values.get("step", 1)
        kind: Kind = "float" if any(isinstance(v, float) for v in (start, stop, step)) else "int"
        return Dimension(kind, low=start, high=stop, step=step)
    if function == "interval":
        values = _arguments("interval", parts, ("start", "end"))
        if len(values) != 2:
            raise ValueError("interval() takes (start, end)")
        return Dimension("float", low=values["start"], high=values["end"])
    if function in ("int", "float", "tag") and parts:
        inner = _expression(parts[-1])
        if function == "tag":
            tags = {part.strip() for part in parts[:-1]}
            if tags != {"log"}:
                raise ValueError(f"tag() supports only tag(log, ...), got tags {sorted(tags)}")
            if inner.kind == "categorical":
                raise ValueError("tag(log, ...) applies to interval() or range(), not choice()")
            return replace(inner, log=True)
        if len(parts) != 1 or inner.kind == "categorical":
            raise ValueError(f"{function}() casts one interval() or range()")
        cast: Kind = "int" if function == "int" else "float"
        return Dimension(cast, low=inner.low, high=inner.high, step=inner.step, log=inner.log)
    raise ValueError(f"unknown function {function}(); {_EXPECTED}")


def parse_dimension(value: object) -> Dimension:
    """One parameter's space from its config value (the forms are in this module's docstring)."""
    if isinstance(value, str) and _CALL_START.match(value):
        try:
            return _expression(value)
        except ValueError as error:
            raise ValueError(f"{error}; got {value!r}") from None
    if isinstance(value, Mapping):
        fields = dict(value)
        kind = fields.pop("type", None)
        if kind not in ("int", "float", "categorical"):
            raise ValueError(f"a mapping needs type: int, float or categorical; got type {kind!r}")
        allowed = {"choices"} if kind == "categorical" else {"low", "high", "step", "log"}
        if unknown := sorted(str(key) for key in set(fields) - allowed):
            raise ValueError(f"unknown keys {unknown} for type {kind}: expected {sorted(allowed)}")
        if kind == "categorical" and "choices" not in fields:
            raise ValueError("type categorical needs choices: [...]")
        return Dimension(kind, **fields)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return Dimension("categorical", choices=tuple(value))
    if isinstance(value, str) and "," in value and "(" not in value:  # Hydra's sweep list: 32,48,64
        hint = f'; a fixed string with a comma is written as a one-item list: ["{value}"]'
        try:
            parts = _split(value)
            if any(not part.strip() for part in parts):
                raise ValueError("a comma list of choices has an empty value")
            return Dimension("categorical", choices=tuple(_scalar(part) for part in parts))
        except ValueError as error:
            raise ValueError(f"{error}; got {value!r}{hint}") from None
    if value is not None and isinstance(value, _SCALARS):
        return Dimension("categorical", choices=(value,))
    hint = " (write [null] to fix the value to null)" if value is None else ""
    raise ValueError(f"{_EXPECTED}, or a fixed number, string or boolean; got {value!r}{hint}")


def parse_space(space: Mapping[str, object]) -> dict[str, Dimension]:
    """Every parameter's dimension; an error names its parameter, e.g. ``max_depth: ...``."""
    if not isinstance(space, Mapping):
        raise ValueError(f"the search space must map parameter names to their spaces, got {space!r}")
    if not space:
        raise ValueError("the search space is empty: give at least one parameter to search")
    check_yaml_cuts(space)
    dimensions: dict[str, Dimension] = {}
    for name, value in space.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"parameter names must be non-empty strings, got {name!r}")
        try:
            dimensions[name] = parse_dimension(value)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    return dimensions


def check_yaml_cuts(space: Mapping[Any, object]) -> None:
    """Raise, naming the parameter, if a YAML flow mapping cut an expression of ``space`` at its commas.

    ``{max_depth: range(2, 10)}`` reaches us as ``max_depth: 'range(2'`` and a parameter ``10)`` with
    no value; ``range(2, 10, 2)`` leaves a parameter ``10`` (a number) too. The pieces are the keys
    with no value after the cut one (a command-line override merged into a config's space appends
    them after its parameters), up to the one that closes the call. Run before the keys are checked
    to be strings, so that the error is this one.
    """
    names = list(space)
    for position, name in enumerate(names):
        value = space[name]
        if not isinstance(value, str) or not _CALL_START.match(value) or _CALL.fullmatch(value):
            continue
        tail: list[str] = []
        for key in names[position + 1 :]:  # other parameters may come between (a merged override)
            if space[key] is not None or isinstance(key, bool):
                continue
            tail.append(str(key).strip())
            if tail[-1].endswith(")"):
                whole = ", ".join([value, *tail])
                raise ValueError(
                    f"{name}: not a complete call: inside a YAML {{...}} or [...], a comma ends the value, "
                    f"which left {value!r} and the parameter(s) {', '.join(map(repr, tail))}; quote the expression "
                    f"('{whole}') or write the space in block style"
                )


def grid_size(dimensions: Mapping[str, Dimension] | Iterable[Dimension]) -> int:
    """How many points an exhaustive grid over these dimensions has (without listing them)."""
    named = dimensions.items() if isinstance(dimensions, Mapping) else enumerate(dimensions)
    size = 1
    for name, dimension in named:
        try:
            size *= dimension.grid_count()
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    return size


def check_space(model: SklearnModel, space: Mapping[str, object], at: tuple[str, ...] = ()) -> None:
    """Refuse a search space with values ``model``'s estimator refuses: they would fail every trial's fit.

    Every choice, and both bounds of every range, is checked as ``params`` are (merged over them,
    as a trial's values are). Raises a pydantic ValidationError with one problem per refused
    parameter, located at ``at + (parameter,)``: raised from a validator, pydantic nests it under
    the model being validated, so the config error names the field (``job.searcher.space.x``).
    """
    problems: list[InitErrorDetails] = []
    for name, dimension in parse_space(space).items():
        problem = _space_problem(model.estimator, model.params, name, dimension)
        if problem:
            error = {"error": ValueError(problem)}
            problems.append({"type": "value_error", "loc": (*at, name), "input": space[name], "ctx": error})
    if problems:
        raise ValidationError.from_exception_data(type(model).__name__, problems)


def _space_problem(estimator: str, params: Mapping[str, Any], name: str, dimension: Dimension) -> str | None:
    """Why ``estimator`` refuses values of the searched parameter ``name`` (None when it takes them)."""

    def refuses(value: object) -> str | None:
        try:
            check_params(estimator, {**params, name: value})
        except ValueError as error:
            return str(error)
        return None

    if dimension.kind == "categorical":
        label = "value" if dimension.fixed else "choice"
        candidates: list[tuple[str, object]] = [(label, value) for value in dimension.choices]
        where = ""
    else:  # scikit-learn's constraints are intervals: a range is taken when both its bounds are
        candidates = [("low", dimension.low), ("high", dimension.high)]
        candidates = candidates[: 1 if dimension.low == dimension.high else 2]
        where = f" of {dimension.describe()}"
    refused = [(label, value, reason) for label, value in candidates if (reason := refuses(value))]
    if not refused:
        return None
    if dimension.kind == "categorical" and len(refused) > 1:
        what = f"choices {', '.join(repr(value) for _, value, _ in refused)}"
    else:
        what = " and ".join(f"{label} {value!r}" for label, value, _ in refused)
    hint = ""
    whole = [int(value) for _, value in candidates if isinstance(value, float) and value.is_integer()]
    if dimension.kind == "float" and len(whole) == len(candidates) and not any(map(refuses, whole)):
        hint = " (the range gives floats: for ints, give int bounds, type: int, or int(...))"
    return f"{estimator} refuses {what}{where}: {refused[0][2]}{hint}"
