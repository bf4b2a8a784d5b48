"""What a reload (SIGHUP, ``casegate reload``, ``config/reload``) may change: rules and
devices now; [center], [storage] and [mqtt] only at the next start."""
from __future__ import annotations

import logging

from gateway.config import Config, ConfigError, load_config

log = logging.getLogger("casegate")


def read_reloaded_config(path: str | None, old: Config) -> Config | str:
    """The config to apply, or the problem (a string) that refuses the reload."""
    if not path:
        return "no config file to reload (running on built-in defaults)"
    try:
        new = load_config(path)
    except ConfigError as e:
        return str(e)
    if new.mqtt != old.mqtt or new.storage != old.storage or new.center != old.center:
        log.warning("reload: [center], [storage] and [mqtt] changes need a restart; ignored")
        new = new.model_copy(update={"mqtt": old.mqtt, "storage": old.storage, "center": old.center})
    return new


def changed_devices(old: Config, new: Config) -> tuple[list[str], list]:
    """(ids of devices to stop, device configs to start): a device whose config changed is
    both; one removed is stopped; one added (or changed) and enabled is started."""
    old_devs = {d.id: d for d in old.devices}
    new_devs = {d.id: d for d in new.devices}
    stop = [dev_id for dev_id, dev in old_devs.items() if new_devs.get(dev_id) != dev]
    start = [dev for dev_id, dev in new_devs.items() if old_devs.get(dev_id) != dev and dev.enabled]
    return stop, start
