"""The checks every component kind passes, whatever its family, and the base class of every kit.

A kit is a class of ``test_*`` methods (the checks) that take a ``case``: one configured component
of the family, with whatever the family's checks need beside it. ``ComponentKit`` parametrises every
check over the kit's cases (pytest calls a test class's ``pytest_generate_tests``), so a test module
only subclasses a kit and names the family's union.
"""

from __future__ import annotations

import abc
import json
import types
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, ClassVar, Generic, Literal, TypeVar, Union, get_args, get_origin

import pytest
from pydantic import SecretBytes, SecretStr, TypeAdapter, ValidationError

from trainyard.core.component import Component

CaseT = TypeVar("CaseT")
UNKNOWN_KEY = "no_such_key"


def kinds_of(union: Any) -> list[type[Any]]:
    """The component classes of a family's union, in its order.

    Takes what a job's field declares: ``Annotated[A | B, Field(discriminator="KIND")]``, a bare
    ``A | B``, ``Annotated[A, ...]`` or a single class (a family of one kind, like ``ModelKind``).
    """
    origin = get_origin(union)
    if origin is not None and hasattr(union, "__metadata__"):  # Annotated[X, ...]
        return kinds_of(get_args(union)[0])
    if origin in (Union, types.UnionType):
        return [kind for member in get_args(union) for kind in kinds_of(member)]
    if isinstance(union, type) and issubclass(union, Component):
        return [union]
    raise TypeError(f"{union!r} is not a component kind (nor a union of them)")


def kind_value(component: Component) -> Any:
    """The ``KIND`` of a component (every kind declares one; the base class does not)."""
    return getattr(component, "KIND")  # noqa: B009 - Component itself has no KIND attribute


def kind_values(kind: type[Component]) -> tuple[Any, ...]:
    """The values the ``KIND`` field of ``kind`` accepts: its Literal's (empty if it is no Literal)."""
    field = kind.model_fields.get("KIND")
    if field is None or get_origin(field.annotation) is not Literal:
        return ()
    return get_args(field.annotation)


def secret_fields(kind: type[Component]) -> list[str]:
    """The fields of ``kind`` that hold a secret (``SecretStr``/``SecretBytes``, optional or not)."""

    def holds_secret(annotation: Any) -> bool:
        if annotation in (SecretStr, SecretBytes):
            return True
        return any(holds_secret(member) for member in get_args(annotation))

    return [name for name, field in kind.model_fields.items() if holds_secret(field.annotation)]


_ADAPTERS: dict[int, tuple[Any, TypeAdapter[Any]]] = {}


def adapter_of(union: Any) -> TypeAdapter[Any]:
    """The validator of ``union`` as a job's field validates it (built once per union)."""
    if id(union) not in _ADAPTERS:
        _ADAPTERS[id(union)] = (union, TypeAdapter(union))  # the union is kept, so its id stays its own
    return _ADAPTERS[id(union)][1]


@cache
def _union_schema(adapter: TypeAdapter[Any]) -> str:
    return json.dumps(adapter.json_schema())


def config_of(component: Component, **dump: Any) -> dict[str, Any]:
    """The mapping a config file would hold for ``component`` (its fields by their YAML names)."""
    return component.model_dump(by_alias=True, **dump)


_IDENTIFIED: dict[type, dict[str, list[tuple[str, Any]]]] = {}  # per kit class: its cases, by id


class ComponentKit(abc.ABC, Generic[CaseT]):
    """The checks of every component kind; each family's kit adds its own.

    A subclass sets ``union``, the family's union as a job's field declares it, and may list
    ``expected_failures``: ``{(check name, case id): defect}``, each run as a strict xfail (it must
    fail, so a fixed defect is noticed). Every check runs once per case of ``cases()``.
    """

    union: ClassVar[Any]
    expected_failures: ClassVar[Mapping[tuple[str, str], str]] = {}

    @abc.abstractmethod
    def cases(self) -> Sequence[CaseT]:
        """The configured components the checks run on (by default, derived from ``union``)."""

    @abc.abstractmethod
    def case_id(self, case: CaseT) -> str:
        """A short, unique name of ``case`` for test ids and ``expected_failures``."""

    @abc.abstractmethod
    def component(self, case: CaseT) -> Component:
        """The component of ``case``, as a config would give it (valid, never used yet)."""

    def parameters(self) -> dict[str, Sequence[Any]]:
        """Each parametrised argument of the checks and its values (``case``: the cases)."""
        return {"case": self.cases()}

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run each check once per case; pytest calls this for every check of the class."""
        check = metafunc.definition.originalname
        for argument, pairs in self._identified().items():
            if argument in metafunc.fixturenames:
                params = [
                    pytest.param(value, id=ident, marks=self._marks(check, ident)) for ident, value in pairs
                ]
                metafunc.parametrize(argument, params, scope="class")

    def _identified(self) -> dict[str, list[tuple[str, Any]]]:
        """``parameters()`` with the id of each value, made and checked once per kit class."""
        kit = type(self)
        if kit not in _IDENTIFIED:
            identified = {
                argument: [(self.case_id(value), value) for value in values]
                for argument, values in self.parameters().items()
            }
            for pairs in identified.values():
                ids = [ident for ident, _ in pairs]
                repeated = sorted({ident for ident in ids if ids.count(ident) > 1})
                if repeated:
                    raise ValueError(f"{kit.__name__}: two cases share the id {', '.join(repeated)}")
            self._check_expected_failures({ident for pairs in identified.values() for ident, _ in pairs})
            _IDENTIFIED[kit] = identified
        return _IDENTIFIED[kit]

    def _marks(self, check: str, ident: str) -> list[pytest.MarkDecorator]:
        reason = self.expected_failures.get((check, ident))
        return [] if reason is None else [pytest.mark.xfail(strict=True, reason=reason)]

    def _check_expected_failures(self, case_ids: set[str]) -> None:
        """Refuse an expected failure that names no check or no case: it would silently not apply."""
        for check, ident in self.expected_failures:
            if not check.startswith("test_") or not callable(getattr(self, check, None)):
                raise ValueError(f"{type(self).__name__}.expected_failures: no check named {check!r}")
            if ident not in case_ids:
                raise ValueError(
                    f"{type(self).__name__}.expected_failures: no case {ident!r} "
                    f"(cases: {', '.join(sorted(case_ids))})"
                )

    # -- the checks of every kind -----------------------------------------------------------------

    def test_kind_is_in_the_family_union(self, case: CaseT) -> None:
        """A config can choose the kind: its class is a member of the family's union."""
        component = self.component(case)
        members = kinds_of(self.union)
        assert type(component) in members, (
            f"{type(component).__name__} is not in the family's union "
            f"({', '.join(kind.__name__ for kind in members)}): no config can choose it"
        )

    def test_kind_is_a_literal(self, case: CaseT) -> None:
        """``KIND`` is a Literal that holds the component's value (and its default, when it has one)."""
        component = self.component(case)
        kind = type(component)
        values = kind_values(kind)
        assert values, f"{kind.__name__}.KIND must be a Literal of its name(s), for the union to choose it"
        assert kind_value(component) in values, (
            f"{kind_value(component)!r} is not among {kind.__name__}.KIND {values}"
        )
        default = kind.model_fields["KIND"].default
        if kind.model_fields["KIND"].is_required():
            return
        assert default in values, f"{kind.__name__}.KIND defaults to {default!r}, outside {values}"

    def test_is_frozen(self, case: CaseT) -> None:
        """Every field refuses to be set after validation: a component never changes under a job."""
        component = self.component(case)
        assert type(component).model_config.get("frozen") is True, f"{type(component).__name__} is not frozen"
        for name in type(component).model_fields:
            with pytest.raises(ValidationError) as caught:
                setattr(component, name, getattr(component, name))
            assert caught.value.errors()[0]["type"] in {"frozen_instance", "frozen_field"}, (
                f"setting {name} failed for another reason: {caught.value}"
            )

    def test_rejects_unknown_keys(self, case: CaseT) -> None:
        """A misspelt key is an error, directly and through the union (extra="forbid")."""
        component = self.component(case)
        config = {**config_of(component), UNKNOWN_KEY: 1}
        for validate in (type(component).model_validate, adapter_of(self.union).validate_python):
            with pytest.raises(ValidationError) as caught:
                validate(config)
            assert any(
                error["type"] == "extra_forbidden" and error["loc"][-1] == UNKNOWN_KEY
                for error in caught.value.errors()
            ), f"the error does not name the unknown key {UNKNOWN_KEY!r}: {caught.value}"

    def test_union_chooses_the_kind_from_its_config(self, case: CaseT) -> None:
        """The union turns the component's config (whole, as JSON text, or only its non-defaults plus
        ``KIND``) back into the same kind with the same values."""
        component = self.component(case)
        kind, secrets = type(component), set(secret_fields(type(component)))
        adapter = adapter_of(self.union)
        chosen = adapter.validate_python(config_of(component))
        assert type(chosen) is kind and chosen == component, f"the union made {chosen!r} of {component!r}"
        minimal = {"KIND": kind_value(component), **config_of(component, exclude_defaults=True)}
        assert adapter.validate_python(minimal) == component, f"the union misread the minimal {minimal}"
        from_json = adapter.validate_json(json.dumps(config_of(component, mode="json")))
        assert type(from_json) is kind, f"the union made a {type(from_json).__name__} of JSON text"
        assert from_json.model_dump(exclude=secrets) == component.model_dump(exclude=secrets)

    def test_has_a_json_schema(self, case: CaseT) -> None:
        """The kind and the union have a JSON Schema (editors validate YAML with it) that accepts the
        component's config and refuses it under an unknown KIND."""
        import jsonschema

        component = self.component(case)
        assert type(component).model_json_schema()["type"] == "object"
        schema = json.loads(_union_schema(adapter_of(self.union)))
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        config = config_of(component, mode="json")
        errors = [error.message for error in validator.iter_errors(config)]
        assert not errors, f"the union's JSON Schema refuses {config}: {errors}"
        assert not validator.is_valid({**config, "KIND": "no_such_kind"}), "the schema takes any KIND"

    def test_dump_revalidates_equal(self, case: CaseT) -> None:
        """``model_dump`` gives a config that validates to an equal component (JSON: but secrets)."""
        component = self.component(case)
        kind, secrets = type(component), set(secret_fields(type(component)))
        again = kind.model_validate(config_of(component))
        assert again == component, f"{again!r} != {component!r}"
        from_json = kind.model_validate_json(component.model_dump_json(by_alias=True))
        assert from_json.model_dump(exclude=secrets) == component.model_dump(exclude=secrets)


def configured_id(component: Component) -> str:
    """``KIND[field=value,...]`` for the fields a component sets to other than their defaults."""
    changed = config_of(component, exclude_defaults=True, mode="json")
    changed.pop("KIND", None)
    return f"{kind_value(component)}{settings_text(changed)}"


def settings_text(settings: Mapping[str, Any]) -> str:
    """``[name=value,...]`` for test ids (empty for no settings): compact, without quotes."""

    def shown(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, list | tuple):
            return "[" + ",".join(shown(item) for item in value) + "]"
        if isinstance(value, Mapping):
            return "{" + ",".join(f"{key}:{shown(item)}" for key, item in value.items()) + "}"
        return json.dumps(value)

    return (
        "[" + ",".join(f"{name}={shown(value)}" for name, value in settings.items()) + "]" if settings else ""
    )
