"""Request commands: ``P/request/<command>`` over MQTT, the control socket and the demo's
desk, all through one table and one dispatch.

* table.py — :func:`command` declares a handler's command (name, argument model, writer
  thread or device pool, rate limit, idempotency, paths, CLI verbs) into :data:`COMMANDS`;
* one module per domain declares its commands beside their handlers: persons, alarms,
  devices, custody, recording, system. Every module of this package that is not part of the
  machinery below is imported here, so a new domain module is found without a list to edit;
* services.py — the narrow interface handlers get instead of the daemon; checks.py — the
  checks handlers share;
* validation.py, router.py, limits.py — parsing, dispatch, idempotency, rate limits. These
  load on first use (``from gateway.commands import RequestRouter``): the CLI, which imports
  this package for its verbs, never needs them (see checks.refusal for the measured reason).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from gateway.commands.table import (CLIENT_ID, COMMANDS, ID, PATHS, RATE_LIMITED_PATHS, Args, Command,
                                    UsageError, Verb, arg, command, register, unregister)

# The machinery; every other module of the package declares commands.
MACHINERY = frozenset({"table", "services", "checks", "validation", "router", "limits"})

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in MACHINERY:
        importlib.import_module(f"{__name__}.{_m.name}")

_LAZY = {"Request": "router", "RequestRouter": "router", "fail": "router", "ok": "router",
         "refused_data": "router", "asked_key": "validation", "correlation_key": "validation",
         "parse_request": "validation", "RESEND_MAX": "limits", "TokenBuckets": "limits",
         "Services": "services", "WriterView": "services", "daemon_services": "services",
         "norm_tag": "checks", "FACE_ENROLL_MAX_BYTES": "persons"}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


__all__ = ["CLIENT_ID", "COMMANDS", "ID", "MACHINERY", "PATHS", "RATE_LIMITED_PATHS", "Args", "Command", "UsageError",
           "Verb", "arg", "command", "register", "unregister", *_LAZY]
