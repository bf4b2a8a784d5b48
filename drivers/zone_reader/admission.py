"""Connections before login, and a flood of them (SPEC §4.1 v2, docs/security.md).

Connections that have not logged in are "pending": capped in total
(``max_pending``) and per source address (``max_pending_per_ip``), closed after
``login_timeout_s``. At a cap the oldest pending connection is evicted - first
one that never sent a valid frame, never a logged-in station; an address a
configured station has logged in from before is exempt from the per-address cap
and evicted last. Cost is bounded by ``max_pending`` whatever the flood.

A flood (``flood_per_min`` refused/evicted/timed-out connections in a minute) is
journaled as ``device.error`` with counts at most once a minute while it lasts,
plus a closing one; meanwhile :attr:`Admission.flood_msg` is set and the
reader's state is "error" with the counts (``casegate devices`` / ``status``).

Runs on the reader's event-loop thread only.
"""
from __future__ import annotations

import collections
from typing import Any

FLOOD_WINDOW_S = 60.0         # the flood counts' window, and the most often a flood is journaled
MAX_FLOOD_ADDRS = 256         # source addresses counted per flood window (the rest: "other")


class Admission:
    """Pending connections and flood accounting of one reader.

    ``drv`` gives the config, counters, log and journal (``count``, ``_log_once``,
    ``_emit``, ``ctx.log``, ``device_id``), the connections (``_conns``), the
    addresses stations logged in from (``_known_addrs``) and ``_update_state(extra)``."""

    def __init__(self, drv: Any, now: float):
        self.drv = drv
        self.cfg = drv.cfg
        self.pending: dict[Any, None] = {}             # not logged in yet, oldest first
        self.pending_per_ip: collections.Counter[str] = collections.Counter()
        self.win: collections.Counter[str] = collections.Counter()     # this window's counts
        self.addrs: collections.Counter[str] = collections.Counter()
        self.start = now
        self.since: float | None = None                # wall time the current flood was first journaled
        self.total: collections.Counter[str] = collections.Counter()   # over the current flood
        self.flood_msg: str | None = None

    # ---- admission -----------------------------------------------------------
    def admit(self, conn: Any) -> bool:
        """A new connection: make room for it among the pending ones, or refuse it."""
        cfg, drv = self.cfg, self.drv
        if len(drv._conns) >= cfg.max_connections:
            victim = self.pick_victim(None)
            if victim is None:           # every slot is a logged-in station
                drv.count("connection_refused")
                self.note("refused", conn.ip)
                drv._log_once(("limit",), "connection limit %d reached, refusing %s", cfg.max_connections,
                              conn.peer)
                return False
            self.evict(victim)
        conn.trusted_addr = conn.ip in drv._known_addrs.values()
        if not conn.trusted_addr and self.pending_per_ip[conn.ip] >= cfg.max_pending_per_ip:
            victim = self.pick_victim(conn.ip)
            if victim is not None:
                self.evict(victim)
        if len(self.pending) >= cfg.max_pending:
            victim = self.pick_victim(None)
            if victim is not None:
                self.evict(victim)
        self.pending[conn] = None
        self.pending_per_ip[conn.ip] += 1
        return True

    def pick_victim(self, ip: str | None) -> Any:
        """The oldest pending connection (of ``ip``): first one that never sent a
        valid frame from an unknown address, then any from an unknown address, then any."""
        first_any = first_untrusted = None
        for c in self.pending:
            if ip is not None and c.ip != ip:
                continue
            if first_any is None:
                first_any = c
            if not c.trusted_addr:
                if not c.valid:
                    return c
                if first_untrusted is None:
                    first_untrusted = c
        return first_untrusted or first_any

    def evict(self, c: Any) -> None:
        self.drv.count("connection_evicted")
        self.note("evicted", c.ip)
        c.close()

    def unpend(self, c: Any) -> None:
        """``c`` logged in or closed: no longer pending."""
        if c in self.pending:
            del self.pending[c]
            n = self.pending_per_ip[c.ip] - 1
            if n > 0:
                self.pending_per_ip[c.ip] = n
            else:
                del self.pending_per_ip[c.ip]

    def expire_logins(self, now: float) -> None:
        """Close pending connections older than ``login_timeout_s``."""
        deadline = now - self.cfg.login_timeout_s
        late = []
        for c in self.pending:                    # oldest first: stop at the first young one
            if c.opened > deadline:
                break
            late.append(c)
        for c in late:
            self.drv.count("login_timeout")
            self.note("login_timeout", c.ip)
            c.close()

    # ---- flood -----------------------------------------------------------------
    def note(self, kind: str, ip: str) -> None:
        """One refused / evicted / timed-out connection from ``ip``."""
        self.win[kind] += 1
        if ip in self.addrs or len(self.addrs) < MAX_FLOOD_ADDRS:
            self.addrs[ip] += 1
        else:
            self.addrs["other"] += 1

    def flood_data(self, counts: collections.Counter, active: bool) -> dict:
        return {"active": active, "refused": counts["refused"], "evicted": counts["evicted"],
                "login_timeout": counts["login_timeout"], "addresses": len(self.addrs),
                "top": [[a, n] for a, n in self.addrs.most_common(3)],
                "since": self.since, "window_s": FLOOD_WINDOW_S}

    def tick(self, now: float, wall: float) -> None:
        """Journal a flood at most once per window while it lasts, and once when it ends."""
        win = self.win
        total = win["refused"] + win["evicted"] + win["login_timeout"]
        elapsed = now - self.start
        if self.since is None:
            if total >= self.cfg.flood_per_min:
                self.since = wall
                self.total = collections.Counter(win)
                self._report(win, now, wall)
            elif elapsed >= FLOOD_WINDOW_S:
                self._reset(now)
            return
        if elapsed < FLOOD_WINDOW_S:
            return
        self.total.update(win)
        if total >= self.cfg.flood_per_min:
            self._report(win, now, wall)
            return
        self._ended(now, wall)

    def _ended(self, now: float, wall: float) -> None:
        drv = self.drv
        t = self.total
        lasted = max(0.0, wall - (self.since or wall))
        msg = (f"connection flood on {self.cfg.listen} ended after {lasted:.0f} s: "
               f"{t['refused']} refused, {t['evicted']} evicted, {t['login_timeout']} login timeouts")
        drv.ctx.log.warning("%s: %s", drv.device_id, msg)
        drv._emit("device.error", {"device": drv.device_id, "error": msg,
                                   "flood": self.flood_data(t, False)}, wall)
        self.since = None
        self.flood_msg = None
        self._reset(now)
        drv._update_state()

    def _report(self, win: collections.Counter, now: float, wall: float) -> None:
        drv = self.drv
        secs = max(1.0, now - self.start)
        top = ", ".join(f"{a} x{n}" for a, n in self.addrs.most_common(3))
        self.flood_msg = (f"connection flood on {self.cfg.listen}: {win['refused']} refused, "
                          f"{win['evicted']} evicted, {win['login_timeout']} login timeouts in {secs:.0f} s "
                          f"from {len(self.addrs)} address(es) ({top}); logged-in stations kept")
        drv.ctx.log.warning("%s: %s", drv.device_id, self.flood_msg)
        drv._update_state(extra={"flood": self.flood_data(win, True)})
        self._reset(now)

    def _reset(self, now: float) -> None:
        self.win.clear()
        self.addrs.clear()
        self.start = now
