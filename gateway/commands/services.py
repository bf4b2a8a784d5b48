"""What a command handler may use beyond the core it runs in: the config in effect, the
devices and their drivers, the uplink's re-publishing, a reload, a face enrolment. The
daemon builds one (:func:`daemon_services`); a test builds its own. Handlers never see
the daemon itself, so what commands can reach is this list and nothing else."""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from gateway.config import Config


class WriterView(Protocol):
    """What a writer-thread handler reads of the core (gateway/core.py ``Core``) it is handed:
    the folded state, the rules engine (alarm book, settings, ``true_now``), the config the
    rules run under, the clock and the journal's last seq. It journals nothing itself: the
    drafts it returns are committed by the router before the answer goes out."""
    state: Any
    engine: Any
    config: Config
    journal: Any

    def clock(self) -> float: ...


@dataclass(frozen=True)
class Services:
    config: Callable[[], Config]                    # the config in effect (a reload replaces it)
    device_config: Callable[[str], Any]             # a configured device by id, or None
    # The running driver of a device that declares a capability, else RequestError not_found
    # naming what was looked for: driver(device_id, capability, what).
    driver: Callable[[str, str, str], Any]
    in_writer: Callable[[Callable], Future]         # run fn(core) -> (value, drafts) in the writer thread
    enroll_face: Callable[[str, bytes, str], dict]  # (person, image, source) -> answer data
    ping_data: Callable[[], dict]
    resend: Callable[[int, int], int]               # re-publish seq range; how many events
    republish_state: Callable[[], int]              # every retained state topic again; how many
    request_reload: Callable[[], str | None]        # re-read the config file; problems or None


def daemon_services(daemon) -> Services:
    """The services of a running :class:`gateway.daemon.Daemon`."""
    return Services(config=lambda: daemon.config, device_config=daemon.device_config, driver=daemon.driver,
                    in_writer=lambda fn: daemon.core.call(fn), enroll_face=daemon.enroll_face,
                    ping_data=daemon.ping_data, resend=daemon.resend, republish_state=daemon.republish_state,
                    request_reload=daemon.request_reload)
