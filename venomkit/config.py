"""Recipes: dataclass configs loaded from YAML files and ``key=value`` overrides.

A recipe is a small YAML mapping that names what it configures and gives its settings::

    # attacks/pgd.yaml
    attack: pgd            # the registry name of the class the recipe configures
    description: PGD L-inf at the TAaMR budget
    config:
      eps: 8/255
      steps: 10

Every settings mapping is turned into a dataclass with :func:`build_config`, which rejects
unknown keys with a message listing the valid ones, and coerces strings (from YAML or from
the command line) to the field's annotated type: ``8/255`` is a float, ``true``/``false``
are booleans, ``a,b`` is a tuple. Validation of values stays in each dataclass's
``__post_init__`` (ValueError naming the field).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["eps=8/255", "steps=20"]`` -> ``{"eps": "8/255", "steps": "20"}`` (values stay strings).

    Raises ValueError naming the item when it has no ``=`` or an empty key.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        out[key] = value.strip()
    return out


def coerce(value: Any, annotation: Any, name: str = "value") -> Any:
    """Convert ``value`` (often a string) to the type ``annotation``; ValueError naming ``name``.

    Handles int, float (fractions like ``8/255`` too), bool, str, ``X | None``, ``Literal``,
    ``tuple[X, ...]``/``list[X]`` (comma-separated strings or YAML lists). Other annotations
    pass the value through unchanged.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if len(non_none) < len(args):
                return None
        errors = []
        for candidate in non_none:
            try:
                return coerce(value, candidate, name)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"{name}: cannot read {value!r} as {annotation}: {'; '.join(errors)}")
    if origin is typing.Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value.strip()):
                return choice
        raise ValueError(f"{name} must be one of {list(args)}, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip().strip("[]()")
            parts: list[Any] = [p.strip() for p in text.split(",") if p.strip()] if text else []
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = [value]
        item_type = args[0] if args else Any
        converted = [coerce(p, item_type, f"{name}[{i}]") for i, p in enumerate(parts)]
        return tuple(converted) if origin is tuple else converted
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(Fraction(value.strip().replace(" ", "")))
            except (ValueError, ZeroDivisionError):
                pass
        raise ValueError(f"{name} must be a number (fractions like 8/255 are fine), got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def check_int(name: str, value: Any, minimum: int = 1, hint: str = "", optional: bool = False,
              maximum: int | None = None, numpy_ok: bool = False) -> None:
    """The one integer check of configs and flags: ``value`` is an int (not a bool) >= ``minimum``
    and <= ``maximum`` when given (or None, where ``optional``).

    ``numpy_ok``: also a numpy integer, for function arguments that callers compute with numpy
    (a config's fields stay plain ints, so that it writes to JSON as it is).

    Raises ``ValueError("NAME must be an integer >= MINIMUM [or None] (HINT), got VALUE")``
    (``in [MINIMUM, MAXIMUM]`` with a maximum): one line naming the field or flag
    (``FinetuneConfig.steps``, ``--threads``).
    """
    if optional and value is None:
        return
    integer = isinstance(value, numbers.Integral) if numpy_ok else isinstance(value, int)
    if isinstance(value, bool) or not integer or value < minimum or (maximum is not None and value > maximum):
        extra = (" or None" if optional else "") + (f" ({hint})" if hint else "")
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {bounds}{extra}, got {value!r}")


def check_int_list(name: str, values: Any, minimum: int = 1) -> None:
    """A non-empty list (or tuple) of ints (not bools) >= ``minimum``, e.g. a recipe's ``ks``.

    Raises ``ValueError("NAME must be a non-empty list of integers >= MINIMUM, got VALUES")``.
    """
    ok = isinstance(values, (list, tuple)) and len(values) > 0
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values)
    if not ok:
        raise ValueError(f"{name} must be a non-empty list of integers >= {minimum}, got {values!r}")


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
    optional: bool = False,
) -> float | None:
    """The one number check of configs and flags: ``value`` is a finite real number (not a bool)
    within ``[low, high]`` (``low_open`` / ``high_open``: that end excluded; None: unbounded), or
    None where ``optional``. Returns it as a float (None stays None).

    Raises ``ValueError("NAME must be a number in (LOW, HIGH] [or None] (HINT), got VALUE")``,
    or ``> LOW`` / ``<= HIGH`` / ``finite`` with one bound or none: one line naming the field.
    """
    if optional and value is None:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            bounds = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            bounds = f"{'>' if low_open else '>='} {low:g}"
        elif high is not None:
            bounds = f"{'<' if high_open else '<='} {high:g}"
        else:
            bounds = "finite"
        what = f"a number {bounds}" if bounds != "finite" else "a finite number"
        extra = (" or None" if optional else "") + (f" ({hint})" if hint else "")
        raise ValueError(f"{name} must be {what}{extra}, got {value!r}")
    return float(value)


def config_fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of dataclass ``cls`` (init fields only)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def build_config(cls: type[T], values: Mapping[str, Any] | None = None, where: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``values`` with unknown-key errors and type coercion.

    ``where`` (a file name or "override") prefixes error messages. Unknown keys raise
    ValueError listing the valid keys.
    """
    values = dict(values or {})
    fields = config_fields(cls)
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"{prefix}unknown key(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    kwargs = {k: coerce(v, fields[k], f"{prefix}{cls.__name__}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ValueError(f"{prefix}{exc}") from None


def replace_config(config: T, overrides: Mapping[str, Any], where: str = "override") -> T:
    """A copy of dataclass ``config`` with ``overrides`` applied (same checks as build_config)."""
    current = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    unknown = sorted(set(overrides) - set(current))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for {type(config).__name__}; "
            f"valid keys: {', '.join(sorted(current))}"
        )
    current.update(overrides)
    fields = config_fields(type(config))
    kwargs = {k: (coerce(v, fields[k], f"{where}: {type(config).__name__}.{k}") if k in overrides else v) for k, v in current.items()}
    try:
        return type(config)(**kwargs)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


@dataclasses.dataclass
class Recipe:
    """A parsed recipe file: what it configures (``kind`` -> registry ``name``) and its settings."""

    kind: str
    name: str
    config: dict[str, Any]
    description: str = ""
    path: Path | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def load_recipe(path: str | Path, kind: str, extra_keys: Sequence[str] = ()) -> Recipe:
    """Read a recipe YAML whose top level is ``{kind: NAME, description?, config?, *extra_keys}``.

    ``kind`` is e.g. ``"attack"`` or ``"defense"``. Unknown top-level keys raise ValueError
    naming the file and listing the valid keys; the ``config`` mapping is checked later by
    :func:`build_config` against the configured class.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"recipe file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a mapping with a {kind!r} key")
    valid = {kind, "description", "config", *extra_keys}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(valid))}")
    if kind not in data or not isinstance(data[kind], str):
        raise ValueError(f"{path}: missing {kind!r}: the registry name of what this recipe configures")
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: 'config' must be a mapping of settings, got {type(config).__name__}")
    return Recipe(
        kind=kind,
        name=data[kind],
        config=dict(config),
        description=str(data.get("description", "")),
        path=path,
        extra={k: data[k] for k in extra_keys if k in data},
    )
