"""The typed schema every config value is checked against, and how its errors read.

Core sections (flowcore/train/config.py), the backbone (flowcore/nn/config.py) and each
plugin's modality and dataset options are pydantic models built on :class:`Options`. A
pydantic ``ValidationError`` becomes one :class:`~flowcore.errors.ConfigError` line through
:func:`config_error`: the dotted key, where the value came from (the YAML file, or ``--set``),
what was expected, and for an unknown key the nearest known one. This module imports no torch.
"""

from __future__ import annotations

import collections.abc
import difflib
import types
import typing
from typing import Annotated, Any, Iterable, Literal, Mapping, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from flowcore.errors import ConfigError

#: the place a value came from when it was given as ``--set key=value``
OVERRIDE = "--set"


def _yaml_number(value: Any) -> Any:
    # YAML 1.1 (PyYAML) reads 1e-3, written without a dot, as a string
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


#: a finite float that also accepts an int and YAML's "1e-3" string (never a bool)
Number = Annotated[float, BeforeValidator(_yaml_number), Field(allow_inf_nan=False)]


class Options(BaseModel):
    """Base of every config model: strict types as YAML writes them, unknown keys refused.

    A plugin's options model subclasses it; its field names are the option names, its
    defaults the factory's defaults.
    """

    model_config = ConfigDict(strict=True, extra="forbid")


Model = TypeVar("Model", bound=BaseModel)


def validate(schema: type[Model], data: Any, source: str, prefix: str = "",
             overridden: Iterable[str] = ()) -> Model:
    """``schema.model_validate(data)``, its errors turned into one :class:`ConfigError` by :func:`config_error`."""
    try:
        return schema.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise config_error(exc, schema, source, prefix, overridden) from None


def config_error(exc: ValidationError, schema: type[BaseModel], source: str, prefix: str = "",
                 overridden: Iterable[str] = ()) -> ConfigError:
    """The first problem of ``exc`` as one line naming its key, its origin and what was expected.

    schema      the model that raised ``exc`` (to name types and the keys an unknown key may mean)
    source      where the values came from: the config file, or e.g. "modality 'image'"
    prefix      the dotted key of ``schema``'s section in the config ("modalities.image")
    overridden  dotted keys set by ``--set``: a problem at or under one of them names ``--set``
    """
    errors = exc.errors(include_url=False)
    # an unknown key first: a misspelt key also shows up as the real key missing
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    keys, hint, known, union_at = _locate(schema, first["loc"])
    key = ".".join(p for p in [prefix, *keys] if p)
    by_override = any(key == k or key.startswith((k + ".", k + "[")) for k in overridden)
    head = f"{OVERRIDE} {key}" if by_override else f"{source}: {key}" if key else source
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(keys[-1], known or [], n=1)
        hint_text = (f"did you mean {close[0]!r}?" if close else
                     f"known keys: {', '.join(known)}" if known else "no options are accepted here")
        return ConfigError(f"{head}: unknown key; {hint_text}")
    if first["type"] == "missing":
        return ConfigError(f"{head}: missing (a required key)")
    if first["type"] == "value_error":  # a validator's own words, which say what they got
        return ConfigError(f"{head}: {first['ctx']['error']}")
    if union_at is not None:  # each arm of a union failed: say what the union takes
        at_key = [e for e in errors if tuple(e["loc"][:union_at]) == tuple(first["loc"][:union_at])]
        value = next((e["input"] for e in at_key if len(e["loc"]) == union_at + 1), first["input"])
        return ConfigError(f"{head}: expected {_describe(hint)}, got {_short(value)}{_suggest(hint, value)}")
    value = first["input"]
    return ConfigError(f"{head}: {_problem(first, hint)}, got {_short(value)}{_suggest(hint, value)}")


BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
          "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}
#: what a constraint other than a bound asks for, in a config reader's words
CONSTRAINTS = {"multiple_of": "must be a multiple of {multiple_of}", "finite_number": "must be a finite number",
               "too_short": "must have at least {min_length} items", "too_long": "must have at most {max_length} items",
               "string_too_short": "must not be empty"}


def _problem(error: Mapping[str, Any], hint: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in BOUNDS:
        name, op = BOUNDS[kind]
        bound = ctx[name]
        return f"must be {op} {format(bound, 'g') if isinstance(bound, float) else bound}"
    if kind in CONSTRAINTS:
        return CONSTRAINTS[kind].format(**ctx)
    if hint is not None and hint is not Any:
        return f"expected {_describe(hint)}"
    msg = error["msg"]
    return msg[:1].lower() + msg[1:]


def _suggest(hint: Any, value: Any) -> str:
    """"; did you mean 'euler'?" when ``value`` is a string close to one of the names ``hint`` allows."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, _names(hint), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _names(hint: Any) -> list[str]:
    """The string choices of a Literal, also inside Annotated and unions."""
    hint = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
    if typing.get_origin(hint) is Literal:
        return [v for v in typing.get_args(hint) if isinstance(v, str)]
    return [n for arm in _arms(hint) for n in _names(arm)]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _locate(schema: Any, loc: tuple) -> tuple[list[str], Any, list[str] | None, int | None]:
    """Walk ``loc`` down ``schema``'s types: (config keys, type at the last key, known keys, union depth).

    ``known`` is set when the last key is not a field of its model (an unknown key). The walk
    stops at a union (``union depth``: the loc parts it used): the parts after it name union
    arms, not keys.
    """
    keys: list[str] = []
    hint: Any = schema
    for depth, part in enumerate(loc):
        hint = _unwrap(hint)
        if _arms(hint):
            return keys, hint, None, depth
        fields = _fields(hint)
        if fields is not None:
            if part not in fields:
                return [*keys, str(part)], None, sorted(fields), None
            keys.append(str(part))
            hint = fields[part]
            continue
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (dict, collections.abc.Mapping):
            keys.append(str(part))
            hint = args[1] if args else Any
        elif origin in (list, tuple, collections.abc.Sequence):
            keys[-1:] = [f"{keys[-1] if keys else ''}[{part}]"]
            hint = args[0] if args else Any
        else:
            return keys, hint, None, None
    return keys, _unwrap(hint), None, None


def _unwrap(hint: Any) -> Any:
    """Annotated[X, ...] -> X; X | None -> X (None is always allowed where it is typed)."""
    while True:
        if typing.get_origin(hint) is Annotated:
            hint = typing.get_args(hint)[0]
            continue
        if _is_union(hint):
            arms = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(arms) == 1:
                hint = arms[0]
                continue
        return hint


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _arms(hint: Any) -> list[Any]:
    return [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else []


def _fields(hint: Any) -> dict[str, Any] | None:
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return {f.alias or name: f.annotation for name, f in hint.model_fields.items()}
    return None


def _describe(hint: Any) -> str:
    """A type as a config reader says it: ``int | None`` -> "an integer or null"."""
    hint = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
    if _is_union(hint):
        args = typing.get_args(hint)
        words = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in args else "")
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        items = {"an integer": "integers", "a number": "numbers", "a string": "strings"}
        of = items.get(_describe(typing.get_args(hint)[0])) if typing.get_args(hint) else None
        return f"a list of {of}" if of else "a list"
    if origin in (dict, collections.abc.Mapping) or hint is dict or _fields(hint) is not None:
        return "a mapping"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


__all__ = ["Options", "Number", "validate", "config_error", "OVERRIDE"]
