"""Request commands: ``P/request/<command>`` over MQTT, the control socket and the demo's
desk, all through one table and one dispatch.

* gateway/commands/table.py — :func:`command` declares a handler's command (name, argument
  model, writer thread or device pool, rate limit, idempotency, paths, CLI verbs) into
  :data:`COMMANDS`;
* one module per domain declares its commands beside their handlers: persons, alarms,
  devices, custody, recording, system. Every module of this package is imported here, so a
  new domain module is found without a list to edit;
* services.py — the narrow interface handlers get instead of the daemon;
* validation.py, router.py, limits.py — parsing, dispatch, idempotency, rate limits.
"""
from __future__ import annotations

import importlib
import pkgutil

from gateway.commands.limits import RESEND_MAX, TokenBuckets
from gateway.commands.router import Request, RequestRouter, fail, ok, refused_data
from gateway.commands.services import Services, daemon_services
from gateway.commands.table import (CLIENT_ID, COMMANDS, ID, PATHS, RATE_LIMITED_PATHS, Args, Command,
                                    UsageError, Verb, arg, command, register, unregister)
from gateway.commands.validation import asked_key, correlation_key, parse_request

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

from gateway.commands.checks import norm_tag  # noqa: E402
from gateway.commands.persons import FACE_ENROLL_MAX_BYTES  # noqa: E402

__all__ = ["CLIENT_ID", "COMMANDS", "FACE_ENROLL_MAX_BYTES", "ID", "PATHS", "RATE_LIMITED_PATHS", "RESEND_MAX",
           "Args", "Command", "Request", "RequestRouter", "Services", "TokenBuckets", "UsageError", "Verb",
           "arg", "asked_key", "command", "correlation_key", "daemon_services", "fail", "norm_tag", "ok",
           "parse_request", "refused_data", "register", "unregister"]
