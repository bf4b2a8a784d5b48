"""Verbs that ask the running daemon how it is: status, devices, top."""
from __future__ import annotations

import sys

from gateway.cli.common import (EXIT_FAILED, EXIT_OK, CliError, control, duration, emit_json, get_config, local,
                                table, verb)
from gateway.config import Config


def cmd_status(args) -> int:
    cfg, _ = get_config(args)
    resp = control(cfg, {"cmd": "status"})
    if not resp.get("ok"):
        raise CliError(f"daemon could not report status: {resp.get('error')}")
    data = resp["data"]
    from gateway.top import devices_down
    healthy = data["uplink"].get("connected") and not data["journal"].get("error") and not devices_down(
        data["devices"])
    if args.json:
        emit_json({**data, "healthy": bool(healthy)})
    else:
        up = data["uplink"]
        j = data["journal"]
        print(f"casegate {data['version']} · center {data['center']} · pid {data['pid']} · "
              f"up {duration(data['uptime_s'])}")
        print(f"uplink   {'connected' if up.get('connected') else 'DISCONNECTED'} "
              f"{up.get('broker', '')} · backlog {up.get('backlog', j['backlog'])} · "
              f"delivered {up.get('delivered', 0)}" + (f" · last error: {up['last_error']}"
                                                        if up.get("last_error") else ""))
        size = f"{j['bytes'] / 1e6:.1f} MB" if j.get("bytes") is not None else "size unknown"
        print(f"journal  {j['path']} · {size} · {j['events']} events · "
              f"last seq {j['last_seq']}" + (f" · ERROR {j['error']}" if j.get("error") else ""))
        print(f"alarms   {data['active_alarms']} active")
        ast = data.get("alarm_states")
        if ast:
            print(f"         {ast['unacknowledged']} unacknowledged ({ast['cleared_unacknowledged']} cleared), "
                  f"{ast['shelves']} shelved, {ast['maintenance']} devices in maintenance")
        _status_start_clock(data)
        off = data.get("legal_disabled")
        if off:                       # DOMAIN v3: legal alarms switched off by the config, and why
            print(f"LEGAL ALARMS DISABLED {', '.join(off['codes'])} · reason: {off['reason']}")
        _devices_table(data["devices"], cfg)
        if not healthy:
            print("unhealthy: " + "; ".join(_unhealthy_reasons(data)), file=sys.stderr)
    return EXIT_OK if healthy else EXIT_FAILED


def _unhealthy_reasons(data: dict) -> list[str]:
    """Why `status` exits 1, in words a technician can act on."""
    reasons = []
    if not data["uplink"].get("connected"):
        reasons.append("the MQTT uplink is not connected (casegate doctor checks the broker)")
    if data["journal"].get("error"):
        reasons.append(f"the journal cannot write: {data['journal']['error']}")
    from gateway.top import devices_down
    down = devices_down(data["devices"])
    if down:
        reasons.append(f"device(s) not online: {', '.join(down)} (casegate devices; casegate probe <device>)")
    return reasons or ["see above"]


def _status_start_clock(data: dict) -> None:
    """The clock (synchronised? steps?) and how the last start rebuilt the state."""
    clk = data.get("clock")
    if clk:
        sync = {True: "synchronised", False: "NOT synchronised", None: "sync unknown"}[clk.get("synchronised")]
        line = f"clock    {sync} ({clk.get('source')})"
        if clk.get("unsynchronised_for_s"):
            line += f" for {clk['unsynchronised_for_s']:.0f} s"
        if clk.get("steps"):
            line += f" · {clk['steps']} wall-clock step(s) journaled"
            if clk.get("corrections"):
                line += f" ({clk['corrections']} correction(s) of an unsynchronised clock)"
        if clk.get("journal_ahead_s"):
            line += f" · journal time {clk['journal_ahead_s']:.0f} s ahead of the wall clock"
        print(line)
    st = data.get("start")
    if st:
        src = f"checkpoint seq {st['from_checkpoint']} + " if st.get("from_checkpoint") else "full replay of "
        line = f"start    {src}{st.get('replayed', 0)} events in {st.get('seconds', 0):.2f} s"
        last = (data.get("checkpoint") or {}).get("last")
        if last:
            line += f" · last checkpoint seq {last['seq']} ({last['bytes'] / 1e6:.1f} MB)"
        print(line)


def _devices_table(devs: list[dict], cfg: Config | None = None) -> None:
    table("devices", ["device", "driver", "state", "last frame", "ok", "bad", "reconnects", "error"],
          [[d["id"], d["driver"], d.get("state"), local(d.get("last_frame") or None, cfg),
            d.get("frames_ok", 0), d.get("frames_bad", 0), d.get("reconnects", 0), d.get("error") or ""]
           for d in devs])


def cmd_devices(args) -> int:
    cfg, _ = get_config(args)
    devs = control(cfg, {"cmd": "devices"})["data"]
    if args.json:
        emit_json(devs)
    else:
        _devices_table(devs, cfg)
    return EXIT_OK if all(d.get("state") == "online" for d in devs) else EXIT_FAILED


def cmd_top(args) -> int:
    from gateway.top import run_top
    cfg, _ = get_config(args)
    control(cfg, {"cmd": "status"}, timeout=5)       # no daemon at start: exit 3 with the hint

    def fetch():
        try:
            resp = control(cfg, {"cmd": "top"}, timeout=5)
        except CliError as e:
            raise RuntimeError(str(e)) from None
        if not resp.get("ok"):
            raise RuntimeError((resp.get("error") or {}).get("message", "daemon refused"))
        return resp["data"]
    return run_top(fetch, interval=args.interval, once=args.once)


def add_status(sub) -> None:
    verb(sub, "status", "uplink, backlog, journal, devices, active alarms (needs the daemon)", cmd_status)


def add_devices(sub) -> None:
    verb(sub, "devices", "per device: state, last frame, frames ok/bad, reconnects (needs the daemon)", cmd_devices)


def add_top(sub) -> None:
    sp = verb(sub, "top", "live view for the duty room: rooms, alarms, devices, uplink (needs the daemon; q quits)",
              cmd_top, json_flag=False)
    sp.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    sp.add_argument("--once", action="store_true", help="print one screen and exit (also when not a terminal)")
