"""The experiment file's schema: the types, ranges, registry choices and uniqueness of every field,
checked by pydantic (v2) on the plain dataclasses of vcfc.runners.config.

Why pydantic: it validates standard dataclasses in place (the rest of vcfc keeps using them as
they are), reports every error with its location (table, entry, field) and the offending value,
and is the most used and best maintained validation library for Python. Registry choices are
looked up when a file is validated, so an entry registered at run time (a plugin, a test's toy
codec) is accepted like a built-in one. Checks that involve several fields (a QP against its
codec's range, presets for codecs not listed) stay in config.validate.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, Strict, ValidationError

from vcfc.errors import InputError
from vcfc.registry import Registry

Int = Annotated[int, Strict()]                     # 32, not "32", 32.0 or true
Str = Annotated[str, Strict()]
Float = Annotated[float, Strict()]                 # 0.5 or 1 (an integer is a number), not "0.5"
Positive = Annotated[int, Strict(), Field(ge=1)]
NonNegative = Annotated[int, Strict(), Field(ge=0)]

DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def one_of(registry: Registry) -> AfterValidator:
    """The value names an entry of ``registry`` (looked up at validation time)."""
    def check(value: str) -> str:
        if value not in registry:
            registry.get(value)  # raises the registry's own "unknown X 'y'; choose from …"
        return value
    return AfterValidator(check)


def _unique(values: list[Any]) -> list[Any]:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ValueError(f"lists {seen[0]!r} twice (every row would be computed and counted twice)")
    return values


def _not_empty(values: list[Any]) -> list[Any]:
    if not values:
        raise ValueError("is empty")
    return values


def _device(value: str) -> str:
    if not DEVICE.match(value):
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
    return value


def device_flag(value: str, flag: str = "--device") -> str:
    """A --device flag, checked like the experiment field and before torch is imported."""
    try:
        return _device(value)
    except ValueError as exc:
        raise InputError(f"{flag} {exc}, got {value!r}") from None


Unique = AfterValidator(_unique)
NotEmpty = AfterValidator(_not_empty)
Device = Annotated[str, Strict(), AfterValidator(_device)]


def choices(registry: Registry) -> Any:
    """A string naming an entry of ``registry``."""
    return Annotated[str, Strict(), one_of(registry)]


def unique_list(item: Any) -> Any:
    """A non-empty list of ``item`` without repeats."""
    return Annotated[list[item], NotEmpty, Unique]


def error_line(exc: ValidationError, where: str = "experiment") -> InputError:
    """The first error as one line: ``where: [table] field: message (got value)``."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    # of a union's branches (quant: a name or a list of names) the deepest error is the telling one
    err = max((e for e in errors if e["loc"][:2] == first["loc"][:2]), key=lambda e: len(e["loc"]))
    loc = [p for p in err["loc"] if isinstance(p, int) or _is_field(p)]
    table, rest = (loc[0], loc[1:]) if loc else ("", [])
    entry = ""
    if rest and isinstance(rest[0], int):  # [[datasets]] / [[models]]: say which entry
        entry, rest = f" #{rest[0] + 1}", rest[1:]
    name = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in rest).replace(".[", "[")
    brackets = f"[[{table}]]" if table in ("datasets", "models") else f"[{table}]" if rest else ""
    field = f"{brackets}{entry} {name}".strip() if brackets else str(table)
    msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        msg = "unknown field"
    got = f" (got {err['input']!r})" if err["type"] not in ("missing", "missing_argument") and _short(err["input"]) else ""
    return InputError(f"{where}: {field}: {msg}{got}" if field else f"{where}: {msg}{got}")


def _is_field(part: Any) -> bool:
    """Location parts that are field names, not pydantic's union or validator tags."""
    return isinstance(part, str) and part.isidentifier() and part not in ("str", "int", "float", "bool", "list", "dict")


def _short(value: Any) -> bool:
    return not isinstance(value, (dict, list)) or len(repr(value)) < 60
