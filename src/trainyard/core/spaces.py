"""Search spaces: ``job.searcher.space`` parsed into dimensions that become Optuna distributions.

Each parameter takes one of these forms:

- a list: categorical choices, ``[gini, entropy]``;
- a mapping: ``{type: int|float, low, high, step, log}`` or ``{type: categorical, choices: [...]}``;
- an expression of the Hydra Optuna sweeper (hydra-optuna-sweeper 1.3,
  ``create_optuna_distribution_from_override``), with the same meaning:

  - ``choice(a, b, ...)``: categorical; values read as YAML scalars (int, float, bool, null, string).
  - ``range(start, stop, step=1)``, or ``range(stop)`` from 0: a stepped distribution whose ``stop`` is
    INCLUDED when the steps reach it (Optuna's ``high``), unlike Python's range; int when start, stop
    and step are all ints, float if any is a float.
  - ``interval(low, high)``: always a float distribution, even for whole numbers (Hydra casts its
    bounds to float); ``int(interval(1, 10))`` gives ints. ``int(...)``/``float(...)`` also cast ranges.
  - ``tag(log, X)``: log scale. Hydra honours it only on ``interval``; here it also works on an int
    ``range`` with step 1 (Hydra 1.3 silently drops it there), and it is an error on a float range or a
    ``choice``. Tags other than ``log`` are errors.

- a plain scalar (number, string, bool): a fixed value, kept as a one-choice categorical so that it is
  recorded with every trial. A bare null is refused (an empty YAML value is likely a slip): write
  ``[null]``. A string that starts like a call, ``name(``, is read as an expression, so a typo such as
  ``rnge(1, 2)`` is an error rather than a fixed string.

A stepped range whose ``high`` is off the step grid is cut down to its last step, as Optuna would do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

Kind = Literal["int", "float", "categorical"]
Choice = None | bool | int | float | str
_SCALARS = (type(None), bool, int, float, str)
_EXPECTED = (
    "expected a list of choices, a {type: int|float|categorical, ...} mapping, or an expression like "
    "choice(1,2), range(1,10), interval(0.1,1.0), tag(log, interval(...))"
)
_CALL = re.compile(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*", re.DOTALL)
_KEYWORD = re.compile(r"\s*([A-Za-z_]\w*)\s*=(?!=)(.*)", re.DOTALL)
_DIGITS = r"\d+(?:_\d+)*"
_INT = re.compile(rf"[+-]?{_DIGITS}")
_FLOAT = re.compile(rf"[+-]?(?:(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?\d+)?|inf|nan)", re.I)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: an int or float range (optionally stepped or log-scaled) or choices."""

    kind: Kind
    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    log: bool = False
    choices: tuple[Choice, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "categorical":
            return self._check_choices()
        if self.kind not in ("int", "float"):
            raise ValueError(f"unknown type {self.kind!r}: expected int, float or categorical")
        if self.choices:
            raise ValueError(f"an {self.kind} range takes low/high/step/log, not choices")
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.kind} range needs both low and high")
        numbers = {"low": self.low, "high": self.high, "step": self.step}
        for name, number in numbers.items():
            if number is None:
                continue
            if self.kind == "int" and not (_is_number(number) and float(number).is_integer()):
                raise ValueError(f"an int range needs whole numbers; {name} is {number!r}")
            if not (_is_number(number) and math.isfinite(number)):
                raise ValueError(f"{name} must be a finite number, got {number!r}")
        if not isinstance(self.log, bool):
            raise ValueError(f"log must be true or false, got {self.log!r}")
        cast = int if self.kind == "int" else float
        low, high = cast(self.low), cast(self.high)
        step = cast(self.step) if self.step is not None else (1 if self.kind == "int" else None)
        if low > high:
            raise ValueError(f"low ({low}) must not be above high ({high})")
        if step is not None and step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        if self.log and low <= 0:
            raise ValueError(f"a log scale needs low > 0, got {low}")
        if self.log and step is not None and step != 1 or (self.log and self.kind == "float" and step):
            raise ValueError("a log scale cannot have a step (Optuna refuses it): drop step or log")
        if step is not None:  # cut high down to the last step, exactly, as Optuna would
            count = int((Decimal(str(high)) - Decimal(str(low))) // Decimal(str(step)))
            high = cast(Decimal(str(low)) + count * Decimal(str(step)))
        for name, value in {"low": low, "high": high, "step": step}.items():
            object.__setattr__(self, name, value)

    def _check_choices(self) -> None:
        if any(v is not None for v in (self.low, self.high, self.step)) or self.log:
            raise ValueError("categorical choices take no low/high/step/log")
        choices = self.choices
        if isinstance(choices, str | bytes | Mapping) or not isinstance(choices, Iterable):
            raise ValueError(f"choices must be a list, got {choices!r}")
        choices = tuple(choices)
        if not choices:
            raise ValueError("choices are empty: give at least one value")
        for choice in choices:
            if not isinstance(choice, _SCALARS):
                raise ValueError(f"choices must be numbers, strings, booleans or null, got {choice!r}")
        if len({(type(c), c) for c in choices}) < len(choices):
            raise ValueError(f"choices repeat a value: {list(choices)}")
        object.__setattr__(self, "choices", choices)

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

    def _grid_count(self) -> int:
        if self.kind == "categorical":
            return len(self.choices)
        if self.step is None:
            raise ValueError(f"a grid needs a step or explicit choices, got {self.describe()}")
        assert self.low is not None and self.high is not None
        return int((Decimal(str(self.high)) - Decimal(str(self.low))) // Decimal(str(self.step))) + 1

    def grid_values(self) -> list[Choice]:
        """Every value of an exhaustive grid: the choices, or low to high (both included) by step."""
        count = self._grid_count()
        if self.kind == "categorical":
            return list(self.choices)
        low, step = Decimal(str(self.low)), Decimal(str(self.step))
        cast = int if self.kind == "int" else float
        return [cast(low + i * step) for i in range(count)]

    def describe(self) -> str:
        """A short human reading, e.g. ``int in [3, 12]``, ``float in [0.0001, 0.1] log``."""
        if self.fixed:
            return f"fixed {self.choices[0]!r}"
        if self.kind == "categorical":
            return f"one of {list(self.choices)!r}"
        text = f"{self.kind} in [{self.low}, {self.high}]"
        if self.step is not None and not (self.kind == "int" and self.step == 1):
            text += f" step {self.step}"
        return text + (" log" if self.log else "")


def _split(text: str) -> list[str]:
    """Top-level comma-separated arguments, minding parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
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
    """A YAML-like scalar: int, float, bool, null, a quoted or a plain string."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if not text or any(char in text for char in "()[]{}=,'\""):
        raise ValueError(f"cannot read the value {text!r}")
    lowered = text.lower()
    if lowered in ("null", "~"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT.fullmatch(text):
        return int(text)
    return float(text) if _FLOAT.fullmatch(text) else text


def _number(text: str, function: str) -> int | float:
    value = _scalar(text)
    if not _is_number(value):
        raise ValueError(f"{function}() takes numbers, got {text.strip()!r}")
    assert isinstance(value, int | float)
    return value


def _arguments(function: str, parts: list[str], names: tuple[str, ...]) -> dict[str, int | float]:
    values: dict[str, int | float] = {}
    for position, part in enumerate(parts):
        keyword = _KEYWORD.fullmatch(part)
        name = keyword.group(1) if keyword else names[position] if position < len(names) else "?"
        if name not in names or name in values:
            raise ValueError(f"{function}() takes ({', '.join(names)}), got {part.strip()!r}")
        values[name] = _number(keyword.group(2) if keyword else part, function)
    return values


def _expression(text: str) -> Dimension:
    call = _CALL.fullmatch(text)
    if not call:
        raise ValueError("not a complete call: check its parentheses")
    function, parts = call.group(1), _split(call.group(2))
    if function == "choice":
        if not parts:
            raise ValueError("choice() needs at least one value")
        return Dimension("categorical", choices=tuple(_scalar(part) for part in parts))
    if function == "range":
        values = _arguments("range", parts, ("start", "stop", "step"))
        if "stop" not in values:  # range(stop) counts from 0, as in Python and Hydra
            values = {"start": 0, "stop": values.get("start", math.nan), **values}
        start, stop, step = values["start"], values["stop"], values.get("step", 1)
        kind: Kind = "float" if any(isinstance(v, float) for v in (start, stop, step)) else "int"
        return Dimension(kind, low=start, high=stop, step=step)
    if function == "interval":
        values = _arguments("interval", parts, ("start", "end"))
        if len(values) != 2:
            raise ValueError("interval() takes (start, end)")
        return Dimension("float", low=float(values["start"]), high=float(values["end"]))
    if function in ("int", "float", "tag") and parts:
        inner = _expression(parts[-1].split("=", 1)[-1] if _KEYWORD.fullmatch(parts[-1]) else parts[-1])
        if function == "tag":
            tags = {part.strip() for part in parts[:-1]}
            if tags != {"log"}:
                raise ValueError(f"tag() supports only tag(log, ...), got tags {sorted(tags)}")
            if inner.kind == "categorical":
                raise ValueError("tag(log, ...) applies to interval() or range(), not choice()")
            return replace(inner, log=True)
        if len(parts) != 1 or inner.kind == "categorical":
            raise ValueError(f"{function}() casts one interval() or range()")
        step = inner.step if inner.step is not None or function == "float" else 1
        return Dimension(function, low=inner.low, high=inner.high, step=step, log=inner.log)  # type: ignore[arg-type]
    raise ValueError(f"unknown function {function}(): use choice, range, interval, tag, int or float")


def parse_dimension(value: object) -> Dimension:
    """One parameter's search space from its config value (see the module docstring for the forms)."""
    if isinstance(value, str) and re.match(r"\s*[A-Za-z_]\w*\s*\(", value):
        try:
            return _expression(value)
        except ValueError as error:
            raise ValueError(f"{error}; {_EXPECTED}; got {value!r}") from None
    if isinstance(value, Mapping):
        fields = dict(value)
        kind = fields.pop("type", None)
        allowed = {"choices"} if kind == "categorical" else {"low", "high", "step", "log"}
        if kind not in ("int", "float", "categorical"):
            raise ValueError(f"a mapping needs type: int, float or categorical; got type {kind!r}")
        unknown = sorted(str(key) for key in set(fields) - allowed)
        if unknown:
            raise ValueError(f"unknown keys {unknown} for type {kind}: expected {sorted(allowed)}")
        if kind == "categorical" and "choices" not in fields:
            raise ValueError("type categorical needs choices: [...]")
        return Dimension(kind, **fields)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return Dimension("categorical", choices=tuple(value))
    if value is not None and isinstance(value, _SCALARS):
        return Dimension("categorical", choices=(value,))
    hint = "; write [null] to fix the value to null" if value is None else ""
    raise ValueError(f"{_EXPECTED}, or a fixed number, string or boolean; got {value!r}{hint}")


def parse_space(space: Mapping[str, object]) -> dict[str, Dimension]:
    """Every parameter's dimension; errors name the parameter."""
    if not isinstance(space, Mapping):
        raise ValueError(f"the search space must map parameter names to their spaces, got {space!r}")
    if not space:
        raise ValueError("the search space is empty: give at least one parameter to search")
    dimensions: dict[str, Dimension] = {}
    for name, value in space.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"parameter names must be non-empty strings, got {name!r}")
        try:
            dimensions[name] = parse_dimension(value)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    return dimensions


def grid_size(dimensions: Mapping[str, Dimension] | Iterable[Dimension]) -> int:
    """How many points an exhaustive grid over these dimensions has."""
    named = dimensions.items() if isinstance(dimensions, Mapping) else enumerate(dimensions)
    size = 1
    for name, dimension in named:
        try:
            size *= dimension._grid_count()
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    return size
