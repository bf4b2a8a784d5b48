"""Reading a camera_events driver's output off its PrintContext."""
from __future__ import annotations

from helpers.polling import poll


def wait(pred, timeout: float) -> bool:
    """True once pred() is; False if it is not within ``timeout`` s (for ``assert wait(...)``)."""
    return bool(poll(pred, timeout))


def events(ctx, type_):
    return [d for t, d in list(ctx.events) if t == type_]
