"""Config errors worded for a technician: ``<file>: <key path>: <reason>`` (Frigate-style).

Here, below both the rule catalog (which validates ``[rules.*]``) and gateway/config.py
(which validates the whole file), so the rules need not import the application.
"""
from __future__ import annotations

import difflib
import json
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


class KeyPathError(ValueError):
    """Raised inside validators to point at an exact key path."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.more: list[KeyPathError] = []


_FRIENDLY = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "extra_forbidden": "unknown key",
    "missing": "required key missing",
}


def loc_to_path(loc: tuple, skip: frozenset[str] = frozenset()) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in skip and parts and parts[-1].startswith("["):
            continue  # discriminated-union tag pydantic inserts into the path
        elif p.startswith("function-") or p.startswith("literal["):
            continue
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _models_in(annotation: Any) -> set[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, Union, Annotated, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    out: set[type[BaseModel]] = set()
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is dict and len(args) == 2:
        args = (args[1],)
    for a in args:
        out |= _models_in(a)
    return out


def _keys_at(model: type[BaseModel] | None, loc: tuple) -> set[str]:
    """The keys the config accepts where ``loc`` ends (for "did you mean"); empty when unknown."""
    models = {model} if model else set()
    for part in loc[:-1]:
        if isinstance(part, int):
            continue          # a list index: the same element models
        fields = {m: m.model_fields[part] for m in models if part in m.model_fields}
        if not fields:
            continue          # a union tag pydantic inserted (a driver kind): stay on the same models
        models = set().union(*(_models_in(f.annotation) for f in fields.values()))
    keys: set[str] = set()
    for m in models:
        keys |= {f.alias or name for name, f in m.model_fields.items()}
    return keys


def did_you_mean(word: str, candidates: set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(candidates), n=2, cutoff=0.6)
    return f" — did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def format_validation_error(file: str, err: ValidationError, skip: frozenset[str] = frozenset(),
                            model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem; ``model`` (the validated class) lets an unknown key get a "did you mean"."""
    out: list[str] = []
    for e in err.errors():
        path = loc_to_path(tuple(e.get("loc", ())), skip)
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, KeyPathError):
            sub = ctx_err.path
            out.append(f"{file}: {sub}: {ctx_err.reason}")
            for more in getattr(ctx_err, "more", ()):       # further problems found in one pass
                out.append(f"{file}: {more.path}: {more.reason}")
            continue
        kind = e.get("type", "")
        reason = _FRIENDLY.get(kind)
        if reason is None:
            reason = e.get("msg", "invalid").removeprefix("Value error, ")
        if kind == "extra_forbidden" and model is not None and e.get("loc"):
            reason += did_you_mean(str(e["loc"][-1]), _keys_at(model, tuple(e["loc"])))
        if kind not in ("missing", "extra_forbidden") and "input" in e:
            got = e["input"]
            if not isinstance(got, (dict, list)):
                reason += f", got {json.dumps(got, ensure_ascii=False)}"
        out.append(f"{file}: {path}: {reason}" if path else f"{file}: {reason}")
    return out
