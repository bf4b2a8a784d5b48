"""Rooms' sessions: the interrogation recorder's state, identification sessions."""
from __future__ import annotations

from pydantic import Field, StrictBool

from gateway.commands.checks import law, officer, refusal, room_type
from gateway.commands.services import Services, WriterView
from gateway.commands.table import ID, Args, Verb, arg, command
from rules.model import Draft


class RecordingState(Args):
    room: str = Field(pattern=ID)
    recording: StrictBool
    source: str = Field(pattern=ID)
    by: str | None = Field(default=None, pattern=ID)    # v3: an officer, unless the room's recorder reports


class Identification(Args):
    room: str = Field(pattern=ID)
    case_id: str = Field(pattern=ID)
    by: str = Field(pattern=ID)


def _recording_verb(verb: str) -> Verb:
    """recording start|stop ROOM --by O: an operator's entry of the recorder's state (commissioning,
    or a recorder that cannot send its own events). The daemon journals who entered it."""
    on = verb == "start"
    return Verb(("recording", verb),
                f"the recorder of ROOM {'is recording' if on else 'stopped'} "
                "(same as MQTT recording/state; journaled as entered by --by)",
                lambda a, tz: {"room": a.room, "recording": on, "source": "operator", "by": a.by},
                lambda a, d: f"{a.room}: recording {'started' if on else 'stopped'} (by {a.by})",
                group_help="tell the daemon a room's recorder started or stopped (by hand)",
                arguments=(
                    arg("room", help="an interrogation room id"),
                    arg("--by", required=True, help="the officer entering it (an operator's entry never counts "
                                                    "as recorder evidence for one-officer questioning)")))


@command("recording/state", RecordingState,
         example={"room": "interrogation-1", "recording": True, "source": "recorder-1"},
         cli=(_recording_verb("start"), _recording_verb("stop")))
def recording_state(s: Services, core: WriterView, a: RecordingState, src: str):
    """The recorder system (or an operator) reports a room's recording. A
    "recording" report is journaled when it changes the state, and as a
    heartbeat at most every stale_s/3 (rules.protections: a recorder silent
    for stale_s counts as not recording); other repeats change nothing."""
    room_type(core, a.room)
    recorder = law().recorder_report(core, a.room, a.source, src)
    if not recorder:
        # v3: by hand, attributable to an officer; never recorder evidence
        if a.by is None:
            raise refusal("forbidden", f"recording/state for {a.room} from {a.source} ({src}) is not its "
                                            f"configured recorder: an operator's report needs by = an officer")
        officer(core, a.by, "a recording report by hand")
    cur = core.state.recording.get(a.room)
    if cur is not None and cur.recording == a.recording:
        stale = core.engine.settings["interrogation_not_recorded"].stale_s
        # the wall clock (the core's), not the engine's: on a quiet night no
        # other event moves the engine clock, and skipped heartbeats would go stale
        if cur.evidence == recorder and (not a.recording or (stale > 0 and core.clock() - cur.seen < stale / 3)):
            return {"room": a.room, "recording": a.recording, "unchanged": True}, []
    data = {"room": a.room, "source": a.source, "recorder": recorder}
    if not recorder:
        data["by"] = a.by
    d = Draft("recording.started" if a.recording else "recording.stopped", data, src)
    return {"room": a.room, "recording": a.recording, "event_id": d.id}, [d]


@command("identification/start", Identification,
         example={"room": "identification-1", "case_id": "c-1", "by": "o1"})
def identification_start(s: Services, core: WriterView, a: Identification, src: str):
    if room_type(core, a.room) != "identification":
        raise refusal("bad_request", f"{a.room} is not an identification room (type identification): "
                                          f"co-suspects meet only there, for the session (程序规定(刑) 第259条)")
    officer(core, a.by, "an identification session")
    if a.case_id in core.state.identifications.get(a.room, {}):
        raise refusal("conflict", f"an identification session for case {a.case_id} is already "
                                       f"running in {a.room}")
    d = Draft("identification.started", {"room": a.room, "case_id": a.case_id, "by": a.by}, src)
    return {"room": a.room, "case_id": a.case_id, "event_id": d.id}, [d]


@command("identification/end", Identification,
         example={"room": "identification-1", "case_id": "c-1", "by": "o1"})
def identification_end(s: Services, core: WriterView, a: Identification, src: str):
    room_type(core, a.room)
    officer(core, a.by, "an identification session")
    if a.case_id not in core.state.identifications.get(a.room, {}):
        raise refusal("not_found", f"no identification session for case {a.case_id} in {a.room}")
    d = Draft("identification.ended", {"room": a.room, "case_id": a.case_id, "by": a.by}, src)
    return {"room": a.room, "case_id": a.case_id, "event_id": d.id}, [d]
