"""What the children of tests/drivers/test_common_child.py run: typed messages and an entry.
Kept free of pytest (imported by every child it starts)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from drivers.base import CommandError
from drivers.common.child import ParentLink, Request, Stop


@dataclass
class Echo(Request):
    text: str


@dataclass
class Refuse(Request):
    code: str


@dataclass
class Explode(Request):
    pass


@dataclass
class Ignore(Request):
    pass


@dataclass
class Exit:
    code: int


@dataclass
class Hello:
    pid: int
    greeting: str


def echo_child(link: ParentLink, greeting: str, exit_at_once: int | None = None) -> None:
    if exit_at_once is not None:
        os._exit(exit_at_once)
    logging.getLogger("casegate.test-child").info("child %d up", os.getpid())
    logging.getLogger("other.lib").warning("from a library")
    link.send(Hello(os.getpid(), greeting))

    def refuse(code: str):
        raise CommandError(code, f"refused with {code}")

    def explode():
        raise RuntimeError("kaboom")
    while True:
        try:
            msg = link.recv()
        except (EOFError, OSError):
            os._exit(0)
        if type(msg) is Stop:
            os._exit(0)
        elif type(msg) is Exit:
            os._exit(msg.code)
        elif type(msg) is Echo:
            link.answer(msg, str.upper, msg.text)
        elif type(msg) is Refuse:
            link.answer(msg, refuse, msg.code)
        elif type(msg) is Explode:
            link.answer(msg, explode, unexpected=lambda e: ("device_refused", f"child error: {e}"))
        elif type(msg) is Ignore:       # never answered; said in the log, so a test knows it arrived
            logging.getLogger("casegate.test-child").info("ignoring request %d", msg.request_id)


