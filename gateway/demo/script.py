"""The scripted day: steps at demo-minute marks, each acting on the simulators or sending a
command, then waiting (bounded in wall time) for the events that prove it happened."""
from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from gateway.demo.center import (BAGS, BEL_LOCKER, CARDS, DOORS, EV_LOCKER, EVIDENCE, EXCITERS, PEOPLE, RECORDERS,
                                 floors)
from gateway.demo.desk import Desk
from gateway.demo.runtime import DemoClock, DemoDaemon, DemoError
from gateway.demo.simulators import Simulators
from gateway.demo.view import Display, View
from rules.model import Event


# Set by the demo's Ctrl-C / SIGTERM handler beside the KeyboardInterrupt it raises: an
# interrupt that lands while the main thread runs a __del__ or a weakref callback is
# printed and swallowed by Python ("Exception ignored in ..."), and the demo then played
# on to a clean exit 0 (seen once in CI under load). The pump checks it every 0.1 s.
# A plain flag, not a threading.Event: setting an Event takes its lock, which a handler
# must not (gateway/daemon.py serve()).
class Interrupted:
    requested = False


INTERRUPTED = Interrupted()


class Script:
    """The scenario (``steps``) and the actions and bounded waits it is written in."""

    def __init__(self, daemon: DemoDaemon, sims: Simulators, desk: Desk, view: View, display: Display,
                 clock: DemoClock, events: queue.Queue[list[Event]]):
        self.d, self.sims, self.desk, self.view, self.ui = daemon, sims, desk, view, display
        self.clock = clock
        self.q = events
        self.problems: list[str] = []
        self.registered: dict[str, float] = {}
        # rooms whose recorder runs -> demo time of its next report: a recorder re-sends its state
        # (a silent one counts as not recording after [rules.interrogation_not_recorded] stale_s)
        self.recording: dict[str, float] = {}
        self.report_every = daemon.core.engine.settings["interrogation_not_recorded"].stale_s / 3

    # -- event pump and bounded waits --
    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if INTERRUPTED.requested:
                raise KeyboardInterrupt
            self._recorder_reports()
            left = deadline - time.monotonic()
            try:
                batch = self.q.get(timeout=max(0.0, min(0.1, left)))
            except queue.Empty:
                batch = None
            while batch is not None:
                for ev in batch:
                    for text, style in self.view.fold(ev):
                        self.ui.log(text, style, at=ev.epoch)
                try:
                    batch = self.q.get_nowait()
                except queue.Empty:
                    batch = None
            self.ui.refresh()
            if time.monotonic() >= deadline:
                return

    def wait(self, pred: Callable[[], Any], timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.pump(0.0)
            if pred():
                return True
            if time.monotonic() >= deadline:
                self.problems.append(f"timed out after {timeout:.0f} s waiting for {what}")
                self.ui.log(f"(timed out waiting for {what})", "magenta")
                return False
            self.pump(0.05)

    def until(self, minute: float) -> None:
        """Let demo time reach the mark (at once if the script is late)."""
        self.clock.compressed()
        target = self.clock.start + minute * 60.0
        for _ in range(100000):
            left = (target - self.clock()) / self.clock.speed
            if left <= 0:
                return
            self.pump(min(left, 0.1))

    def wait_alarm(self, code: str, person: str | None = None, demo_s: float = 0.0, slack: float = 10.0) -> bool:
        """Wait for an alarm the story expects, letting demo time run compressed for its ``demo_s``."""
        self.clock.compressed()
        try:
            return self.wait(lambda: self.view.alarm_active(code, person), demo_s / self.clock.speed + slack,
                             f"alarm {code}")
        finally:
            self.clock.real_time()

    # -- the interrogation rooms' recorders (审讯主机): they report for themselves --
    def recorder(self, room: str, on: bool) -> None:
        self.command("recording/state", account=RECORDERS[room], room=room, recording=on, source=RECORDERS[room])
        if on:
            self.recording[room] = self.clock() + self.report_every
        else:
            self.recording.pop(room, None)

    def _recorder_reports(self) -> None:
        for room, due in list(self.recording.items()):
            if self.clock() >= due:
                self.command("recording/state", account=RECORDERS[room], room=room, recording=True,
                             source=RECORDERS[room])
                self.recording[room] = self.clock() + self.report_every

    def command(self, cmd: str, **args) -> dict:
        try:
            return self.desk(cmd, **args)
        except DemoError as e:
            self.problems.append(str(e))
            self.ui.log(f"command failed: {e}", "magenta")
            return {}

    # -- people --
    def register(self, pid: str) -> None:
        role, name, gender, tag, extra = PEOPLE[pid]
        self.command("person/register", person=pid, role=role, name=name, gender=gender, **extra)
        self.command("wristband/bind", tag=tag, person=pid)
        if pid in CARDS:
            self.command("wristband/bind", tag=CARDS[pid], person=pid)
        self.registered[pid] = self.clock()

    def _tag(self, pid: str) -> str:
        return PEOPLE[pid][3]

    def move(self, room: str, *who: str, wait: bool = True) -> None:
        """``who`` in arrival order: escorts first, the suspect last (she leaves first)."""
        dev, addr = EXCITERS[room]
        site = self.sims.site
        for pid in reversed(who):
            for st in site.stations.values():
                if st.has_tag(self._tag(pid)):
                    st.remove_tag(self._tag(pid))
        for pid in who:
            site[dev].add_tag(self._tag(pid), exciter=addr)
        if wait:
            self.wait(lambda: all(self.view.room_of(p) == {room} for p in who), 8.0,
                      f"{', '.join(who)} in {room}")

    def leave_center(self, pid: str) -> None:
        for st in self.sims.site.stations.values():
            if st.has_tag(self._tag(pid)):
                st.remove_tag(self._tag(pid))
        self.wait(lambda: not self.view.room_of(pid), 8.0, f"{pid} out of range")

    def door(self, door: str, open_: bool) -> None:
        i, _room = DOORS[door]
        mark = len(self.view.events)
        self.sims["doors"].set_input(i, 0 if open_ else 1)
        typ = "door.opened" if open_ else "door.closed"
        self.wait(lambda: self.view.find(typ, mark, door=door), 5.0, f"{typ} {door}")

    def swipe(self, pid: str) -> None:
        mark = len(self.view.events)
        self.sims["card"].swipe(CARDS[pid], repeats=3)
        self.wait(lambda: self.view.find("card.swiped", mark, card=CARDS[pid]), 5.0, f"card swipe of {pid}")

    def compartment(self, locker: str, comp: int, by: str, put: str | None = None, take: str | None = None,
                    order: str | None = None) -> None:
        """Unlock (locker/open), put or take an item, shut the door, wait for the inventory."""
        board, uhf = ((self.sims["ev_board"], self.sims["ev_uhf"]) if locker == EV_LOCKER
                      else (self.sims["bel_board"], self.sims["bel_uhf"]))
        mark = len(self.view.events)
        args = {"locker": locker, "compartment": comp, "by": by}
        if order:
            args["order"] = order
        self.command("locker/open", **args)
        self.wait(lambda: self.view.find("locker.opened", mark, locker=locker, compartment=comp), 5.0,
                  f"{locker}/{comp} opened")
        if put:
            uhf.add_tag(put)
            board.set_occupied(comp, True)
        if take:
            uhf.remove_tag(take)
            board.set_occupied(comp, False)
        board.set_door(comp, False)
        self.wait(lambda: self.view.find("locker.closed", mark, locker=locker, compartment=comp), 5.0,
                  f"{locker}/{comp} closed")
        if put:
            self.wait(lambda: self.view.find("evidence.added", mark, locker=locker, item=put), 6.0,
                      f"inventory: {put} in {locker}/{comp}")
        if take:
            self.wait(lambda: self.view.find("evidence.removed", mark, locker=locker, item=take), 6.0,
                      f"inventory: {take} gone from {locker}/{comp}")

    def deposit_belongings(self, pid: str, by: str) -> None:
        epc, comp = BAGS[pid]
        self.command("belongings/assign", person=pid, locker=BEL_LOCKER, compartment=comp)
        self.compartment(BEL_LOCKER, comp, by, put=epc)

    def return_belongings(self, pid: str, by: str) -> None:
        epc, comp = BAGS[pid]
        self.compartment(BEL_LOCKER, comp, by, take=epc)

    def checkout_and_exit(self, pid: str, by: str) -> None:
        self.move("exit", by, pid)
        self.door("exit-door", True)
        self.leave_center(pid)
        # the view prints "… has left the center" from the person.left event itself: once
        self.wait(lambda: self.view.find("person.left", 0, person=pid), 5.0, f"person.left {pid}")
        self.door("exit-door", False)
        self.move("corridor", by)

    # -- the day --
    def steps(self) -> list[tuple[float, str, Callable[[], None]]]:
        W, L, ZH, ZO = "off-wang", "off-li", "off-zhang", "off-zhao"
        S1, S2, S3 = "sus-liu", "sus-chen", "sus-zhou"
        warn_s = (1.5 - 1.0) * 3600.0      # administrative limit 1.5 h, first warning 60 min before

        def setup():
            for pid in (W, L, ZH, ZO, "staff-sun", "staff-zhou", "staff-wu"):
                self.register(pid)
            self.move("security_check", "staff-sun")
            self.move("waiting-1", "staff-zhou")
            self.move("waiting-2", "staff-wu")
            self.move("corridor", W, L, ZH, ZO)

        def s1_arrives():
            self.move("entrance", W)
            self.door("entrance-door", True)
            self.register(S1)
            self.move("entrance", W, S1)
            self.door("entrance-door", False)

        def s3_arrives():
            self.move("entrance", ZH)
            self.register(S3)
            self.move("entrance", ZH, S3)

        def s3_belongings():
            self.move("belongings", ZH, S3)
            self.deposit_belongings(S3, ZH)

        def s1_belongings():
            self.move("belongings", W, S1)
            self.deposit_belongings(S1, W)

        def s2_arrives():
            self.move("entrance", L)
            self.register(S2)
            self.move("entrance", L, S2)

        def s3_interrogation():
            # nobody switched interrogation 2's recorder on: 全程同步录音录像 is missing
            self.move("interrogation-2", ZH, ZO, S3)
            self.wait_alarm("procedure_skipped", S3)
            grace = self.d.core.engine.settings["interrogation_not_recorded"].grace_s
            self.wait_alarm("interrogation_not_recorded", S3, demo_s=grace)

        def s3_recorder_on():
            self.recorder("interrogation-2", True)

        def s2_belongings():
            self.move("belongings", L, S2)
            self.deposit_belongings(S2, L)

        def s2_waiting():
            self.move("waiting-2", L, S2)
            self.move("corridor", L)

        def s1_interrogation():
            self.recorder("interrogation-1", True)        # recording before the questioning starts
            self.move("waiting-1", W, L)
            self.move("interrogation-1", W, L, S1)

        def officer_leaves():
            self.move("corridor", L)
            self.wait_alarm("lone_interrogation", demo_s=30)
            self.wait_alarm("officer_left_interrogation", demo_s=60)

        def toilet():
            self.move("waiting-2", "staff-sun")
            self.move("toilet", "staff-sun", S2)

        def toilet_back():
            self.move("waiting-2", "staff-sun", S2)
            self.move("security_check", "staff-sun")

        def officer_back():
            self.move("interrogation-1", L)

        def s3_back():
            # waiting room 1, with the men: 陈某 (a woman) waits in waiting room 2
            self.move("waiting-1", ZH, S3)
            self.move("corridor", ZH, ZO)
            self.recorder("interrogation-2", False)

        def evidence_store():
            self.move("evidence_store", ZO)
            self.swipe(ZO)
            self.door("evidence-door", True)

        def unauthorised_take():
            self.compartment(EV_LOCKER, 2, ZO, take=EVIDENCE["knife"])
            self.wait_alarm("evidence_unauthorized_removal")

        def authorised_take():
            self.command("custody/order", order="CO-2026-0342-01", item=EVIDENCE["phone"], action="withdraw",
                         case_id="X2026-0342", by=ZH)
            self.compartment(EV_LOCKER, 5, ZO, take=EVIDENCE["phone"], order="CO-2026-0342-01")

        def door_held():
            lim = floors(self.clock.speed)["door_held_open"]["limit_s"]
            self.wait_alarm("door_held_open", demo_s=lim)
            self.door("evidence-door", False)
            self.move("corridor", ZO)

        def s1_back():
            self.move("waiting-1", W, S1)
            self.move("corridor", W, L)
            self.recorder("interrogation-1", False)

        def mixup():
            self.move("waiting-2", L)
            self.move("waiting-1", L, S2)
            self.wait_alarm("collusion_risk", demo_s=5)
            self.wait_alarm("mixed_waiting_room", S2, demo_s=30)

        def separated():
            self.move("waiting-2", L, S2)
            self.move("corridor", L)

        def warning():
            due = self.registered.get(S3, self.clock()) + warn_s
            self.wait_alarm("detention_warning", S3, demo_s=max(0.0, due - self.clock()))

        def s3_checkout():
            self.move("waiting-1", ZH)
            self.command("person/checkout", person=S3, by=ZH)
            self.wait_alarm("belongings_forgotten", S3)

        def s3_fetches():
            self.move("belongings", ZH, S3)
            self.return_belongings(S3, ZH)

        def s3_exit():
            self.checkout_and_exit(S3, ZH)

        def s1_fetches():
            self.move("waiting-1", W)
            self.move("belongings", W, S1)
            self.return_belongings(S1, W)
            self.command("person/checkout", person=S1, by=W)

        def s1_exit():
            self.checkout_and_exit(S1, W)

        return [
            (0, "officers and staff sign in; guards take their posts", setup),
            (1, "刘某 (case A, criminal) is brought in by 王建国 and registered", s1_arrives),
            (3, "刘某 → security check (孙丽 searches)", lambda: self.move("security_check", W, S1)),
            (5, "周某 (case X, administrative) is brought in by 张伟", s3_arrives),
            (6, "刘某 → belongings: locker compartment 1", s1_belongings),
            (8, "周某 → belongings (he skips the security check)", s3_belongings),
            (9, "刘某 → information collection", lambda: self.move("info_collection", W, S1)),
            (10, "陈某 (case A, co-suspect of 刘某) is brought in by 李娜", s2_arrives),
            (11, "周某 → information collection", lambda: self.move("info_collection", ZH, S3)),
            (12, "陈某 → security check", lambda: self.move("security_check", L, S2)),
            (13, "刘某 → waiting room 1", lambda: (self.move("waiting-1", W, S1), self.move("corridor", W))),
            (14, "周某 → interrogation 2 with 张伟 and 赵磊, never searched — and its recorder is off",
             s3_interrogation),
            (15, "张伟 has interrogation 2's recorder switched on", s3_recorder_on),
            (16, "陈某 → belongings: compartment 2", s2_belongings),
            (17, "陈某 → information collection", lambda: self.move("info_collection", L, S2)),
            (19, "陈某 → waiting room 2", s2_waiting),
            (20, "interrogation 1's recorder starts; 刘某 → interrogation 1 with 王建国 and 李娜", s1_interrogation),
            (22, "李娜 steps out of interrogation 1 for a phone call", officer_leaves),
            (24, "陈某 asks for the toilet; 孙丽 escorts her", toilet),
            (25, "陈某 is back in waiting room 2", toilet_back),
            (26, "李娜 is back in interrogation 1", officer_back),
            (27, "周某's interrogation ends → waiting room 1 (the men's; 陈某 waits in room 2); recorder off",
             s3_back),
            (28, "赵磊 enters the evidence store (card swipe), props the door open", evidence_store),
            (29, "赵磊 takes the knife out of compartment 2 without a custody order", unauthorised_take),
            (31, "custody order for the phone, then 赵磊 takes it from compartment 5", authorised_take),
            (32, "the evidence store door is still open", door_held),
            (34, "刘某's interrogation ends → waiting room 1; recorder off", s1_back),
            (36, "mix-up: 李娜 brings 陈某 into waiting room 1, where her co-suspect 刘某 and 周某 sit", mixup),
            (38, "陈某 back to waiting room 2", separated),
            (39, "周某's administrative time limit approaches", warning),
            (40, "checkout of 周某 approved, his belongings still in the locker", s3_checkout),
            (41, "周某 fetches his belongings", s3_fetches),
            (43, "周某 leaves through the exit", s3_exit),
            (45, "刘某 fetches his belongings; checkout approved", s1_fetches),
            (47, "刘某 leaves through the exit", s1_exit),
        ]
