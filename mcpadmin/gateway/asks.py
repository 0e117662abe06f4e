"""Requests an upstream sends back to the agent during a call (elicitation, sampling, roots):
relayed to the agent, and the agent's answer taken back to the upstream.

The rule, for each pair of eras:

- **2025 agent, 2025 upstream.** The upstream sends the request on the call's event stream
  [25N/http §Sending Messages to the Server]. Every legacy upstream session mcpadmin opens
  declares elicitation, sampling and roots (``mcp.ASK_CAPABILITIES``): a pooled session serves
  every agent that uses the connector, so it cannot declare one agent's capabilities, and one
  pool keyed by capabilities would multiply handshakes for nothing. A request the agent's own
  client did not declare (``initialize``'s ``capabilities``, kept on its session) is answered
  at once with -32601 and a sentence, what a client without that handler answers; never a
  hang. Else it goes to the agent on its ``tools/call`` event stream under an id of ours (a
  ``PendingAsk`` row). The agent POSTs its answer to the endpoint, which any worker may
  receive (``received``): that worker stores it in the row and, when the call runs in its own
  process, wakes the waiter at once; the worker holding the call otherwise finds it in the row
  within ``ASK_CHECK_SECONDS``. The answer goes upstream under the upstream's own id, in the
  session that asked. The agent must take an event stream (its Accept) and answer within the
  call's deadline, else the upstream gets the error, or the call ends with a sentence;
  cancelling the call cancels the wait.
- **2026 agent, 2026 upstream.** Stateless [26/mrtr]: an ``input_required`` result passes
  through unchanged (its ``requestState`` is opaque), the agent's declared
  ``clientCapabilities`` (those naming requests: elicitation, sampling, roots) go upstream
  instead of none, and the retry's ``inputResponses`` and ``requestState`` go upstream as they
  are (``carry``). The retry names the same tool, so it reaches the same connector.
- **2025 agent, 2026 upstream.** Each ``inputRequests`` entry becomes a request to the agent,
  as for a 2025 upstream; with every answer in, the call is made again with
  ``inputResponses`` and ``requestState`` (``Asker.inputs``), for at most ``MAX_ROUNDS``
  rounds. The upstream is told the capabilities the agent's session declared (none when the
  call takes no event stream), so it asks only what the agent can answer.
- **2026 agent, 2025 upstream.** A modern response stream carries no requests [26/http
  §Receiving Messages], and an ``input_required`` result would leave the upstream's call
  waiting between two stateless requests of the agent, which may reach different workers: the
  spec defines no stateless mapping, so the upstream gets -32601 with a sentence saying so.

Each request relayed or refused gets a call-log row of its kind (``Kind.ELICITATION``,
``SAMPLING``, ``ROOTS``) with its outcome: ``ok`` answered, ``tool_error`` declined by the
agent, ``refused_not_allowed`` not relayed (undeclared, no stream, modern agent),
``upstream_timeout`` unanswered by the deadline, ``cancelled``.

Hooks for ``prompts/get`` and ``resources/read`` [26/mrtr: input_required is for those too]:
an ``Asker`` needs only the call's caller, its call-log ``Call``, whether it is modern and
takes a stream, the pair (to scrub) and a ``forward`` coroutine onto the agent's stream.
"""

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import anyio
import anyio.from_thread
import anyio.lowlevel
from sqlalchemy import delete, select, update

from ..extensions import db
from ..models import GatewaySession, PendingAsk, utcnow
from ..protocol import mcp, server
from ..services import calllog, calls
from ..services.calllog import Kind, Outcome

log = logging.getLogger(__name__)

# How often the worker holding a call looks in the database for an answer another worker got.
ASK_CHECK_SECONDS = 0.5
# input_required rounds of one call translated for a 2025 agent before it ends with a sentence.
MAX_ROUNDS = 8
MAX_ANSWER_BYTES = 1 << 20  # an agent's answer kept and relayed, as JSON
ID_PREFIX = "mcpadmin-ask-"  # the ids of requests relayed to agents
STALE_AFTER = timedelta(days=1)  # rows a crashed worker left behind are deleted after this
# The requests relayed, the client capability each needs [25N/client], and their row's kind.
ASKS = {
    "elicitation/create": ("elicitation", Kind.ELICITATION),
    "sampling/createMessage": ("sampling", Kind.SAMPLING),
    "roots/list": ("roots", Kind.ROOTS),
}
META_CAPABILITIES = server.META + "clientCapabilities"

_WAITERS: dict[str, "_Waiter"] = {}  # ask id → the call waiting for it in this process
_LOCK = threading.Lock()


class Unrelayed(Exception):
    """A request that is not relayed to the agent; ``str()`` says why."""


@dataclass
class _Waiter:
    token: object  # the event loop of the waiting call
    event: anyio.Event
    answer: dict | None = None

    def deliver(self, answer: dict):
        self.answer = answer
        self.event.set()


class Asker:
    """Relays one call's upstream requests to its agent. ``prepared`` is the call
    (``dispatch.Prepared``); ``forward`` puts a message on the agent's stream."""

    def __init__(self, plane, prepared, forward):
        self.plane, self.prepared, self.forward = plane, prepared, forward
        self.agent = prepared.caller.agent.name
        self._capabilities: dict | None = None

    async def __call__(self, request: dict, ends: float) -> dict:
        """The answer to POST to a legacy upstream for its ``request``: the agent's, under
        the upstream's id, or an error saying why it was not relayed.

        :raise calls.Refused: the agent did not answer by ``ends`` (the call ends).
        """
        if request.get("method") not in ASKS:
            return mcp.answer_to(request)
        try:
            answer = await self.ask(request["method"], request.get("params"), ends)
        except Unrelayed as exc:
            return mcp.refusal(request, str(exc))
        return {"jsonrpc": "2.0", "id": request.get("id"), **answer}

    async def inputs(self, result: dict, ends: float) -> dict:
        """The retry's ``inputResponses`` and ``requestState`` for a 2026 upstream's
        ``input_required`` ``result``, each request answered by the 2025 agent [26/mrtr].

        :raise calls.Refused: a request was not relayed, refused or unanswered (the call ends
            with the sentence).
        """
        requests = result.get("inputRequests") or {}
        if not isinstance(requests, dict):
            text = "The server asked for input mcpadmin cannot read (inputRequests is no object)."
            raise calls.Refused(Outcome.PROTOCOL, text)
        responses = {}
        for key, entry in requests.items():
            entry = entry if isinstance(entry, dict) else {}
            method = entry.get("method")
            try:
                answer = await self.ask(method, entry.get("params"), ends)
            except Unrelayed as exc:
                raise calls.Refused(Outcome.NOT_ALLOWED, str(exc)) from None
            if "result" not in answer:
                raise calls.Refused(Outcome.TOOL_ERROR, _declined(self.agent, method, answer))
            responses[key] = answer["result"]
        inputs = {"inputResponses": responses}
        if "requestState" in result:  # opaque: given back as it came [26/mrtr]
            inputs["requestState"] = result["requestState"]
        return inputs

    async def ask(self, method, params, ends: float) -> dict:
        """The agent's answer to one request: ``{"result": …}`` or ``{"error": …}``. Its
        call-log row is queued whatever the ending.

        :raise Unrelayed: not sent to the agent (the sentence says why).
        :raise calls.Refused: unanswered by ``ends``.
        """
        if method not in ASKS:  # not a request a client answers: no row
            raise Unrelayed(f"mcpadmin relays no {str(method)[:100]!r} request to agents.")
        capability, kind = ASKS[method]
        call = self._call(method, kind, params)
        started = time.monotonic()
        outcome, error, size = Outcome.PROTOCOL, "Internal error in mcpadmin.", 0
        try:
            await self._check(method, capability, params)
            answer = await self._relay(method, params, ends)
            size = len(json.dumps(answer, default=str))
            outcome, error = _judged(self.agent, method, answer)
            return answer
        except Unrelayed as exc:
            outcome, error = Outcome.NOT_ALLOWED, str(exc)
            raise
        except calls.Refused as exc:
            outcome, error = exc.kind, str(exc)
            raise
        except anyio.get_cancelled_exc_class():
            outcome, error = Outcome.CANCELLED, "The call was cancelled while the agent was asked."
            raise
        finally:
            spent = (time.monotonic() - started) * 1000
            calllog.record(call, outcome, error, spent, spent, size, app=self.plane.app)

    async def _check(self, method: str, capability: str, params):
        """:raise Unrelayed: the agent cannot be asked ``method``."""
        prepared, agent = self.prepared, self.agent
        if prepared.modern:
            raise Unrelayed(f"Agent {agent}'s client speaks 2026-07-28 and cannot answer "
                            f"{method} mid-call through mcpadmin.")  # fmt: skip
        if not prepared.takes_stream:
            raise Unrelayed(f"Agent {agent}'s call does not accept an event stream (Accept: "
                            f"text/event-stream), so {method} cannot reach it.")  # fmt: skip
        declared = (await self.capabilities()).get(capability)
        if not isinstance(declared, dict):
            raise Unrelayed(f"Agent {agent}'s client did not declare the {capability} "
                            f"capability, so mcpadmin cannot relay {method} to it.")  # fmt: skip
        mode = params.get("mode") if isinstance(params, dict) else None
        if capability == "elicitation" and mode == "url" and "url" not in declared:
            # [25N/client/elicitation §Capabilities]: url mode needs its own flag.
            raise Unrelayed(f"Agent {agent}'s client did not declare URL-mode elicitation, so "
                            f"mcpadmin cannot relay {method} to it.")  # fmt: skip

    async def capabilities(self) -> dict:
        """What the agent's legacy session declared (read once per call, when first asked)."""
        if self._capabilities is None:
            session = self.prepared.caller.session
            found = None
            if session is not None:
                found = await self.plane.run(session_capabilities, session.id_sha256)
            self._capabilities = found or {}
        return self._capabilities

    async def _relay(self, method: str, params, ends: float) -> dict:
        """Send the request to the agent under a fresh id and wait for its answer.

        :raise calls.Refused: none came by ``ends``.
        """
        prepared = self.prepared
        ask_id = ID_PREFIX + secrets.token_urlsafe(24)
        session = prepared.caller.session
        await self.plane.run(opened, ask_id, session.id_sha256, prepared.caller.agent.id, method)
        waiter = _Waiter(anyio.lowlevel.current_token(), anyio.Event())
        with _LOCK:
            _WAITERS[ask_id] = waiter
        try:
            message = {"jsonrpc": "2.0", "id": ask_id, "method": method}
            if isinstance(params, dict):
                message["params"] = prepared.target.pair.scrubbed(params)
            await self.forward(message)
            answer = await self._wait(ask_id, waiter, ends)
        finally:
            with _LOCK:
                _WAITERS.pop(ask_id, None)
            with anyio.CancelScope(shield=True):
                await self.plane.run(closed, ask_id)
        if answer is None:
            text = (f"Agent {self.agent} did not answer the server's {method} request before "
                    "the call's deadline.")  # fmt: skip
            raise calls.Refused(Outcome.TIMEOUT, text)
        return answer

    async def _wait(self, ask_id: str, waiter: _Waiter, ends: float) -> dict | None:
        """The answer: from this process at once, else from the row; None at ``ends``."""
        while True:
            left = ends - time.monotonic()
            if left <= 0:
                return None
            with anyio.move_on_after(min(ASK_CHECK_SECONDS, left)):
                await waiter.event.wait()
            if waiter.answer is not None:
                return waiter.answer
            stored = await self.plane.run(stored_answer, ask_id)
            if stored is not None:
                return stored

    def _call(self, method: str, kind: Kind, params) -> calllog.Call:
        """The request's call-log row, named after the call it belongs to."""
        prepared = self.prepared
        caller, parent = prepared.caller, prepared.call
        size = len(json.dumps(params, default=str)) if params is not None else 0
        call = calllog.Call(parent.request_id, caller.agent.id, caller.agent.name,
                            caller.key_id, caller.key_label, method, size)  # fmt: skip
        call.connector_id, call.connector_name = parent.connector_id, parent.connector_name
        call.upstream_tool, call.era, call.kind = method, parent.era, kind
        return call


def input_required(result) -> bool:
    """Whether a ``tools/call`` answer asks for input first [26/mrtr]."""
    return isinstance(result, dict) and result.get("resultType") == mcp.INPUT_REQUIRED


def refused_retry(prepared, exc: mcp.McpError) -> calls.Outcome | None:
    """The outcome of a 2026 agent's ``tools/call`` retry (it carries ``inputResponses`` or
    ``requestState``) that the upstream refused as invalid params: a ``requestState`` that
    fails its integrity check, or ``inputResponses`` it cannot read [26/mrtr: servers MUST
    reject tampered state, SHOULD validate input responses, with a JSON-RPC error]. The agent
    sent them as they are (``carry``), so the refusal is its to see: its ``rpc_error`` is
    -32602 with the connector's sentence (``_Pair.explained``), not an ``isError`` result. None
    for any other failure (or a legacy agent, whose retries mcpadmin makes)."""
    retried = any(k in prepared.message.params for k in ("inputResponses", "requestState"))
    if not (prepared.modern and retried and isinstance(exc, mcp.RpcError)):
        return None
    if exc.code != server.INVALID_PARAMS:
        return None
    outcome = prepared.target.pair.explained(exc)
    outcome.rpc_error = {"code": server.INVALID_PARAMS, "message": outcome.error, "data": None}
    return outcome


def too_many_rounds(agent: str) -> str:
    return (f"The server kept asking agent {agent} for input: mcpadmin stopped after "
            f"{MAX_ROUNDS} rounds.")  # fmt: skip


def carry(target: calls.Target, message: server.Message, session, takes_stream: bool):
    """What a modern upstream gets beside the agent's call: a modern agent's declared
    capabilities and its retry's ``inputResponses``/``requestState`` as they are; a legacy
    agent's session capabilities (one read, only for a modern upstream), so the upstream asks
    only what the agent can answer. Call in the dispatch's pool thread."""
    if message.modern:
        target.capabilities = _requesting(message.meta.get(META_CAPABILITIES))
        inputs = {k: message.params[k] for k in ("inputResponses", "requestState")
                  if k in message.params}  # fmt: skip
        target.inputs = inputs or None
    elif target.era == "modern" and session is not None and takes_stream:
        target.capabilities = _requesting(session_capabilities(session.id_sha256))


@dataclass(frozen=True)
class Envelope:
    """What a forwarded request's modern upstream is told and what it may answer
    (``envelope``): the client ``capabilities`` declared, and the ``resultType`` values
    passed back to the agent."""

    capabilities: dict | None
    kinds: tuple[str, ...]


# The forwarded requests a server may answer ``input_required`` [26/mrtr: prompts/get,
# resources/read and tools/call].
ASKING = ("prompts/get", "resources/read")


def envelope(message: server.Message, method: str) -> Envelope:
    """For a forwarded ``prompts/get`` or ``resources/read``, as ``carry`` for a tool call:
    a modern agent's declared capabilities (those naming requests) go upstream and an
    ``input_required`` result comes back to it unchanged, its retry's ``inputResponses`` and
    ``requestState`` going upstream as they are (in the params ``forwarding.route`` keeps).
    A legacy agent declares none upstream: its prompts/get or resources/read gets one JSON
    answer, with no stream to relay a request on, so the upstream must not ask."""
    if message.modern and method in ASKING:
        capabilities = _requesting(message.meta.get(META_CAPABILITIES))
        return Envelope(capabilities, ("complete", mcp.INPUT_REQUIRED))
    return Envelope(None, ("complete",))


def _requesting(capabilities) -> dict:
    """Of declared client capabilities, those naming requests the gateway relays."""
    if not isinstance(capabilities, dict):
        return {}
    relayed = {capability for capability, _kind in ASKS.values()}
    return {name: value for name, value in capabilities.items()
            if name in relayed and isinstance(value, dict)}  # fmt: skip


def _judged(agent: str, method: str, answer: dict) -> tuple[Outcome, str | None]:
    """The row's outcome: answered, or declined by the agent (an error, an elicitation
    declined or cancelled [25N/client/elicitation §Response Actions])."""
    if "result" not in answer:
        return Outcome.TOOL_ERROR, _declined(agent, method, answer)
    result = answer["result"]
    action = result.get("action") if isinstance(result, dict) else None
    if method == "elicitation/create" and action in ("decline", "cancel"):
        return Outcome.TOOL_ERROR, f"Agent {agent} answered {method} with {action!r}."
    return Outcome.OK, None


def _declined(agent: str, method, answer: dict) -> str:
    error = answer.get("error")
    said = error.get("message") if isinstance(error, dict) else None
    said = f": {str(said)[:200]}" if said else "."
    return f"Agent {agent}'s client refused {str(method)[:100]}{said}"


# -- the database side (pool threads) ---------------------------------------------------------


def opened(ask_id: str, session_sha256: str, agent_id: int, method: str):
    """The request's row (committed), and rows a crashed worker left behind deleted."""
    db.session.execute(delete(PendingAsk).where(PendingAsk.created_at < utcnow() - STALE_AFTER))
    db.session.add(PendingAsk(id=ask_id, session_sha256=session_sha256, agent_id=agent_id,
                              method=method))  # fmt: skip
    db.session.commit()


def closed(ask_id: str):
    db.session.execute(delete(PendingAsk).where(PendingAsk.id == ask_id))
    db.session.commit()


def stored_answer(ask_id: str) -> dict | None:
    answer = db.session.scalar(select(PendingAsk.answer).where(PendingAsk.id == ask_id))
    db.session.rollback()
    return answer


def session_capabilities(session_sha256: str) -> dict | None:
    found = db.session.scalar(select(GatewaySession.client_capabilities)
                              .where(GatewaySession.id_sha256 == session_sha256))  # fmt: skip
    db.session.rollback()
    return found


def received(session, message: server.Message):
    """A legacy agent's answer to a request relayed to it: stored in its row (only the
    session it was sent to may answer, once; committed), and the waiting call woken at once
    when it runs in this process. Anything else is dropped (it was a response to nothing)."""
    ask_id = message.id
    if session is None or not isinstance(ask_id, str) or not ask_id.startswith(ID_PREFIX):
        return
    answer = _capped(message.answer or {})
    done = db.session.execute(
        update(PendingAsk)
        .where(PendingAsk.id == ask_id[:64], PendingAsk.session_sha256 == session.id_sha256,
               PendingAsk.answered_at.is_(None))
        .values(answer=answer, answered_at=utcnow())
    )  # fmt: skip
    db.session.commit()
    if done.rowcount:
        with _LOCK:
            waiter = _WAITERS.get(ask_id)
        if waiter is not None:
            try:
                anyio.from_thread.run_sync(waiter.deliver, answer, token=waiter.token)
            except RuntimeError:  # the loop is gone: the row still holds the answer
                log.info("could not wake the call waiting for %s", ask_id)


def _capped(answer: dict) -> dict:
    """The answer as kept and relayed: an error saying so when it is too large."""
    size = len(json.dumps(answer, default=str))
    if size <= MAX_ANSWER_BYTES:
        return answer
    text = f"The agent's answer ({size} bytes) is larger than mcpadmin relays ({MAX_ANSWER_BYTES})."
    return {"error": {"code": server.INTERNAL_ERROR, "message": text}}
