"""The fold registry: which function folds each event type into the State.

A fold module in this package registers its functions with ``@folds("<type>", ...)``;
rules/state/__init__.py imports every module of the package, so a new fold (or a new
domain module) is found, never listed. A type is folded at most once, and only a
declared type (rules/model/event_types.py) may be folded: both are refused at import."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from rules.model import EVENT_TYPES

if TYPE_CHECKING:
    from rules.model import Event
    from rules.state.center import State

Fold = Callable[["State", "Event"], None]

# event type -> its fold; read on every event by State.fold
FOLDS: dict[str, Fold] = {}


def folds(*types: str) -> Callable[[Fold], Fold]:
    """Register the decorated function as the fold of ``types``."""
    def register(fn: Fold) -> Fold:
        for t in types:
            if t not in EVENT_TYPES:
                raise ValueError(f"{fn.__module__}.{fn.__name__} folds {t!r}, which no event type declares "
                                 f"(rules/model/event_types.py DECLARED)")
            if t in FOLDS:
                other = FOLDS[t]
                raise ValueError(f"{t!r} is folded twice: {other.__module__}.{other.__name__} "
                                 f"and {fn.__module__}.{fn.__name__}")
            FOLDS[t] = fn
        return fn
    return register
