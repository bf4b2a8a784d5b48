"""The one dispatch of requests: ``P/request/<command>`` -> ``P/response/<command>``, and the
same commands from the control socket (``casegate ack``, ``person add``, ...) and the demo's
desk. Every path calls :meth:`RequestRouter.dispatch`.

Every request is checked before anything changes (gateway/commands/validation.py): each
refusal gets ``ok:false`` with a SPEC §3 error code and leaves the journal untouched. A
request that acts is answered only after its events are committed, and its response is
stored with them under its ``request_id``: a re-sent request gets the same answer and acts
once.

State-changing commands run in order on one worker thread (a bind right behind a register
must see the registration); device commands (an unlock waiting for the board) run on a small
pool so they never hold the others up.
"""
from __future__ import annotations

import json
import logging
import queue
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from gateway import legal
from gateway.commands.limits import RESEND_MAX, TokenBuckets
from gateway.commands.services import Services
from gateway.commands.table import CLIENT_ID, COMMANDS, RATE_LIMITED_PATHS, Args
from gateway.commands.validation import asked_key, parse_request, request_id_of
from gateway.core import CommitResult, Core, RequestError
from gateway.device_pools import KeyedPools
from rules.model import Draft

log = logging.getLogger("casegate.requests")


@dataclass
class Request:
    command: str
    args: Args | None
    request_id: Any
    response_topic: str | None = None
    correlation: bytes | None = None
    source: str = "mqtt"                 # the journal's source of what it causes (SPEC §2)
    path: str = "mqtt"                   # how it arrived: one of PATHS
    # Who asked, for idempotency (asked_key): the broker-proven MQTT account, the control
    # socket's peer user, the demo's desk; "" = the source.
    client: str = ""
    # Where its answer goes; None = the router's own respond (P/response/<command>).
    reply: Callable[["Request", dict], None] | None = None


class Conflict:
    """A request_id already answered for another request: refused, never stored."""

    def __init__(self, error: RequestError):
        self.error = error


def refused_data(req: Request, err: RequestError) -> dict:
    """``request.refused`` [command, code, by?] (SPEC §3 v3), plus the request_id, who
    asked and why."""
    data: dict[str, Any] = {"command": req.command, "code": err.code}
    for k in ("by", "person", "room", "order", "approved_by"):      # who, and which matter
        v = getattr(req.args, k, None)
        if isinstance(v, str):
            data[k] = v
    data.update({"request_id": req.request_id, "client": req.client or req.source, "message": err.message[:500]})
    return data


def ok(rid: str, data: dict) -> str:
    return json.dumps({"request_id": rid, "ok": True, "data": data}, ensure_ascii=False,
                      separators=(",", ":"))


def fail(rid: Any, err: RequestError) -> dict:
    return {"request_id": rid, "ok": False, "error": {"code": err.code, "message": err.message}}


class RequestRouter:
    """The one dispatch of requests (:meth:`dispatch`): MQTT messages (:meth:`on_message`),
    the control socket and the demo's desk (:meth:`call`) all go through it, so each
    command of :data:`COMMANDS` validates, rate-limits, acts and answers one way."""

    def __init__(self, services: Services | None, core: Core, respond: Callable[[Request, dict], None],
                 max_bytes: int):
        self.services = services        # what handlers may use (gateway/commands/services.py)
        self.core = core
        self.respond = respond          # MQTT answers: P/response/<command> (+ MQTT 5 response topic)
        self.max_bytes = max_bytes
        self._q: "queue.Queue[tuple[Request, Args] | None]" = queue.Queue(maxsize=10_000)
        # per device: a slow camera never holds up a locker/open (gateway/device_pools.py)
        self._pool = KeyedPools("device-cmd", workers=1, max_queued=8)
        self._inflight: dict[str, str] = {}      # request_id -> asked key, of device commands running
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="requests", daemon=True)
        self._worker.start()
        self.counts = {"ok": 0, "failed": 0, "duplicate": 0}
        mq = services.config().mqtt if services is not None else None
        self.resend_limit = TokenBuckets(getattr(mq, "resend_events_per_min", 200_000))
        self.heavy_limit = TokenBuckets(getattr(mq, "heavy_requests_per_min", 20))
        self.counts["rate_limited"] = 0

    def stop(self) -> None:
        self._q.put(None)
        self._worker.join(3)
        self._pool.shutdown()

    def dispatch(self, command: str, payload: bytes, *, path: str, source: str,
                 reply: Callable[[Request, dict], None] | None = None,
                 response_topic: str | None = None, correlation: bytes | None = None,
                 client: str | None = None) -> None:
        """Validate, rate-limit (RATE_LIMITED_PATHS) and queue one request; ``reply``
        (default: :attr:`respond`) gets its answer once. Never blocks: paho's network
        thread calls this. ``client``: who asked, for idempotency (default: ``source``)."""
        args, rid, err = parse_request(command, payload, self.max_bytes, correlation, path)
        req = Request(command if command in COMMANDS else command[:100], args, rid, response_topic,
                      correlation, source=source, path=path, reply=reply, client=client or source)
        if err is None and path in RATE_LIMITED_PATHS:
            err = self._rate_limit(req)
        if err is not None:
            self.counts["failed"] += 1
            log.info("request %r rejected: %s %s", req.command, err.code, err.message)
            self._reply(req, fail(rid, err))
            return
        self.submit(req)

    def call(self, command: str, args: dict, *, path: str, source: str, timeout: float,
             client: str | None = None) -> dict:
        """dispatch() and wait for the answer: for callers that answer their own caller
        (the control socket, the demo's desk) rather than a response topic."""
        answer: Future = Future()
        payload = json.dumps(args, ensure_ascii=False).encode()
        self.dispatch(command, payload, path=path, source=source, client=client,
                      reply=lambda req, body: answer.set_result(body))
        try:
            return answer.result(timeout=timeout)
        except TimeoutError:
            return fail(request_id_of(args.get("request_id")),
                        RequestError("busy", f"no answer within {timeout:g} s"))

    def on_message(self, prefix: str, msg) -> None:
        """An MQTT message on P/request/<command> or P/client/<account>/request/<command>
        (paho's network thread).

        SPEC §2: source is mqtt:<client>. MQTT does not tell a subscriber who published, so
        the identity comes from the topic, which the broker's ACL binds to the account
        (docs/security.md §3a: an account may publish only under client/<its name>/) —
        never from what the client says about itself (an MQTT 5 user property is ignored).
        The SPEC form P/request/<command> carries no identity: its source is
        ``mqtt:central``, and the ACL grants it to the central platform's account only."""
        rest = msg.topic[len(prefix) + 1:]
        client = "central"
        if rest.startswith("client/"):
            name, _, rest = rest[len("client/"):].partition("/")
            if not re.fullmatch(CLIENT_ID, name) or not rest.startswith("request/"):
                log.info("request on %r ignored: not client/<account>/request/<command>", msg.topic[:200])
                return
            client = name
        if not rest.startswith("request/"):
            return
        command = rest[len("request/"):]
        props = getattr(msg, "properties", None)
        self.dispatch(command, msg.payload, path="mqtt", source=f"mqtt:{client}",
                      response_topic=getattr(props, "ResponseTopic", None) if props else None,
                      correlation=getattr(props, "CorrelationData", None) if props else None)

    def _reply(self, req: Request, payload: dict) -> None:
        (req.reply or self.respond)(req, payload)

    def _rate_limit(self, req: Request) -> RequestError | None:
        """``busy`` for a client over its share of re-published events or heavy requests,
        so that no central client can make the gateway publish millions of messages."""
        # A broker-proven account (P/client/<account>/...) is one budget whatever its response
        # topics; the anonymous SPEC form is told apart by its response topic as before.
        key = req.source if req.source != "mqtt:central" else f"{req.source}|{req.response_topic or ''}"
        limit = COMMANDS[req.command].limit
        if limit == "resend" and hasattr(req.args, "from_seq") and hasattr(req.args, "to_seq"):
            a = req.args
            last = getattr(getattr(self.core, "journal", None), "last_seq", None)
            hi = min(a.to_seq, a.from_seq + RESEND_MAX - 1)
            if isinstance(last, int):
                hi = min(hi, last)
            cost, limiter, what = max(1, hi - a.from_seq + 1), self.resend_limit, "events re-published"
        elif limit == "heavy":
            cost, limiter, what = 1, self.heavy_limit, "heavy requests"
        else:
            return None
        wait = limiter.take(key, cost)
        if wait <= 0:
            return None
        self.counts["rate_limited"] += 1
        retry = f"; retry in {max(1, round(wait + 0.5))} s" + (" (or ask for a smaller range)" if cost > 1 else "")
        if limiter.exhausted == "total":
            # Whose budget is spent matters: a client refused because others used up the
            # shared total must not read it as its own excess.
            return RequestError("busy", f"{req.command} from {req.source}: all clients together are over their "
                                        f"shared limit of {2 * limiter.per_min:g} {what} per minute (not "
                                        f"{req.source}'s own limit of {limiter.per_min:g}; "
                                        f"{limiter.left(key):g} of it left){retry}")
        return RequestError("busy", f"{req.command} from {req.source}: over {req.source}'s own limit of "
                                    f"{limiter.per_min:g} {what} per minute{retry}")

    def submit(self, req: Request) -> None:
        try:
            self._q.put_nowait((req, req.args))
        except queue.Full:
            self._reply(req, fail(req.request_id, RequestError("busy", "too many pending requests")))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            req, args = item
            try:
                self._handle(req, args)
            except Exception:
                log.exception("request %s failed", req.command)

    def _asked(self, req: Request, args: Args) -> str:
        return asked_key(req.client or req.source, req.command, args)

    @staticmethod
    def _conflict(core: Core, rid: str, asked: str) -> RequestError | None:
        """``conflict`` if ``rid`` was answered for another request (another client,
        command or payload). Rows of an earlier release know only their command."""
        stored = core.requests_asked.get(rid)
        if stored is None:
            return None
        cmd, key = stored
        if key == asked or (key is None and asked.startswith(cmd + "|")):
            return None
        return RequestError("conflict", f"request_id {rid} was already used for another request (another "
                                        f"client, command or payload) and is answered only to that one; "
                                        f"send this request with a new request_id")

    def _refuse(self, req: Request, err: RequestError) -> None:
        """Answer ``conflict`` and journal it (request.refused, SPEC §3 v3): a request
        that reused someone else's request_id is on the record, and nothing else changes."""
        self.counts["failed"] += 1
        self.counts["conflict"] = self.counts.get("conflict", 0) + 1
        log.warning("request %s %s from %s refused: %s", req.command, req.request_id, req.client or req.source,
                    err.message)
        data = refused_data(req, err)
        try:    # answered after COMMIT, like every request that journals something
            self.core.submit(Draft("request.refused", data, req.source), timeout=None).result(timeout=30)
        except Exception as e:
            log.error("could not journal request.refused: %r", e)
        self._reply(req, fail(req.request_id, err))

    def _handle(self, req: Request, args: Args) -> None:
        rid = args.request_id
        asked = self._asked(req, args)
        text = self.core.requests_done.get(rid)
        if text is not None:
            err = self._conflict(self.core, rid, asked)
            if err is not None:
                self._refuse(req, err)
                return
            self.counts["duplicate"] += 1
            self._reply(req, json.loads(text))
            return
        src = req.source
        spec = COMMANDS[req.command]
        if spec.pool:
            with self._lock:
                other = self._inflight.get(rid)
                if other is None:
                    self._inflight[rid] = asked
            if other == asked:
                return  # the first copy will answer
            if other is not None:
                self._refuse(req, RequestError("conflict", f"request_id {rid} is in use by another request "
                                                           f"being carried out; send this one with a new "
                                                           f"request_id"))
                return
            key = (getattr(args, spec.device_arg, None) if spec.device_arg else None) or req.command
            if not self._pool.submit(str(key), self._device, req, args):
                with self._lock:
                    self._inflight.pop(rid, None)
                self.counts["failed"] += 1
                self._reply(req, fail(rid, RequestError("busy", f"{key} has too many commands waiting; "
                                                               "retry when they are done")))
            return
        fn, services = spec.handler, self.services
        self.answer(req, lambda core: fn(services, core, args, src), store=spec.stored, asked=asked)

    def answer(self, req: Request, fn, store: bool = True, asked: str | None = None) -> dict:
        """Run fn(core) in the writer thread; respond after COMMIT."""
        rid = req.request_id
        if asked is None and req.args is not None:
            asked = self._asked(req, req.args)

        def call(core: Core):
            # Checked again inside the writer: two copies racing in the queue act once,
            # and a copy of another request with the same id is refused there too.
            stored = core.recall_request(rid) if store else None
            if stored is not None:
                err = self._conflict(core, rid, asked) if asked is not None else None
                if err is not None:
                    return Conflict(err), [Draft("request.refused", refused_data(req, err), req.source)]
                return stored, []
            try:
                value, drafts = fn(core)
            except RequestError as e:
                # SPEC §3 v3: a refused legal request is journaled (request.refused); the
                # error as value is not stored under the request_id (core stores only str)
                if not legal.refusal_journaled(req.command, req.args, e):
                    raise
                return e, [Draft("request.refused", refused_data(req, e), req.source)]
            return ok(rid, value), drafts

        fut = self.core.call(call, request=(rid, req.command, asked) if store else None)
        try:
            res: CommitResult = fut.result(timeout=30)
            if isinstance(res.value, Conflict):
                raise res.value.error
            if isinstance(res.value, RequestError):
                raise res.value
            payload = json.loads(res.value)
            self.counts["ok"] += 1
        except RequestError as e:
            payload = fail(rid, e)
            self.counts["failed"] += 1
        except TimeoutError:
            payload = fail(rid, RequestError("busy", "journal did not commit within 30 s"))
            self.counts["failed"] += 1
        self._reply(req, payload)
        return payload

    def _device(self, req: Request, args: Args) -> None:
        rid = args.request_id
        try:
            spec = COMMANDS[req.command]
            try:
                data = spec.handler(self.services, args, req.source)
            except RequestError as e:
                payload = fail(rid, e)
            except Exception as e:
                code = getattr(e, "code", None)
                if code:
                    payload = fail(rid, RequestError(code, getattr(e, "message", str(e))))
                else:
                    log.exception("%s failed", req.command)
                    payload = fail(rid, RequestError("device_refused", str(e)))
            else:
                payload = json.loads(ok(rid, data))
            if payload["ok"] and spec.stored:
                # Remember the answer durably so a re-sent unlock does not unlock twice.
                text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
                asked = self._asked(req, args)
                self.core.call(lambda core: (text, []), request=(rid, req.command, asked)).result(timeout=30)
            self.counts["ok" if payload["ok"] else "failed"] += 1
            self._reply(req, payload)
        finally:
            with self._lock:
                self._inflight.pop(rid, None)
