"""The official MCP clients, driven from pytest as an agent would drive them, and the official
conformance suite. Every client takes the same steps (see ``ts_client.mjs``) and answers one
dict per step:

- ``run_ts`` runs the TypeScript SDK client (``ts_client.mjs``, Node from ``.node/clients``);
- ``run_py1`` runs the 1.30.0 Python client (``py1_client.py`` under ``.venv-mcp1``);
- ``run_py2`` runs the 2.x Python client in this process, ``mode="auto"`` (probes
  ``server/discover``, falls back to ``initialize``) or ``mode="legacy"`` (``initialize`` only);
- besides tools, every client lists resources and templates (``resources``), reads one
  (``read``), lists prompts (``prompts``), gets one (``prompt``), completes an argument
  (``complete``) and answers an elicitation during a ``call`` with its ``elicit`` (the
  answer then has ``"elicited"``, the requests seen);
- ``conformance`` runs one server scenario of the suite at one protocol version and answers
  its checks;
- ``serve_gateway`` serves the app under gunicorn on a real port, and ``seed_agent`` gives it
  an agent with a key whose tools are those of the given connectors.

``scripts/client-deps`` installs the Node side; ``scripts/test`` runs it.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings

import anyio
import requests

from tests.gateway_helpers import run_async

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NODE_PREFIX = os.path.join(ROOT, ".node", "clients")
NODE = os.path.join(NODE_PREFIX, "node_modules", "node", "bin", "node")
CONFORMANCE_PACKAGE = os.path.join(
    NODE_PREFIX, "node_modules", "@modelcontextprotocol", "conformance"
)
PY1 = os.path.join(ROOT, ".venv-mcp1", "bin", "python")
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")
TIMEOUT = 120


def missing() -> str | None:
    """What is not installed for these clients, or None: for a pytest skip reason."""
    for path, how in (
        (NODE, "scripts/client-deps"),
        (CONFORMANCE_PACKAGE, "scripts/client-deps"),
        (PY1, "scripts/test (the mcp 1.x venv)"),
    ):
        if not os.path.exists(path):
            return f"{path} is missing: run {how}"
    return None


def _lines(command: list[str], steps: list[dict]) -> list[dict]:
    done = subprocess.run(
        command, input=json.dumps(steps), capture_output=True, text=True, timeout=TIMEOUT
    )
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if len(answers) != len(steps) and not (len(answers) == 1 and "error" in answers[0]):
        raise AssertionError(
            f"{command[1]} exited {done.returncode} with {len(answers)} answers for "
            f"{len(steps)} steps\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return answers


def run_ts(url: str, key: str, steps: list[dict]) -> list[dict]:
    """The TypeScript SDK client; a failed connect answers one ``{"error": ...}``."""
    return _lines([NODE, os.path.join(HERE, "ts_client.mjs"), url, key], steps)


def run_py1(url: str, key: str, steps: list[dict]) -> list[dict]:
    """The mcp 1.30.0 client; a failed connect raises with its traceback."""
    return _lines([PY1, os.path.join(HERE, "py1_client.py"), url, key], steps)


def run_py2(url: str, key: str, steps: list[dict], mode: str = "auto") -> list[dict]:
    """The mcp 2.x client in this process (its own event loop); also answers, last, which
    protocol version it negotiated: ``[..., {"protocol_version": "..."}]``."""
    return run_async(_py2, url, key, steps, mode)


async def _py2(url, key, steps, mode):
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    answers, elicitation = [], _Elicitation()
    transport = streamable_http_client(url, http_client=http)
    async with http, Client(transport, mode=mode, elicitation_callback=elicitation) as client:
        for step in steps:
            try:
                if step["op"] == "call":
                    elicitation.answer, elicitation.seen = step.get("elicit"), []
                answer = await _py2_step(client, step)
                answers.append(
                    {**answer, "elicited": elicitation.seen} if "elicit" in step else answer
                )
            except Exception as error:  # noqa: BLE001 - every failure is reported per step
                answers.append({"error": str(error) or type(error).__name__})
        answers.append({"protocol_version": client.session.protocol_version})
    return answers


def _dump(model) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Elicitation:
    """Answers the server's elicitation requests (2025: on the stream; 2026: the client's
    input_required driver) with the running step's ``elicit``, else declines."""

    def __init__(self):
        self.answer, self.seen = None, []

    async def __call__(self, context, params):
        from mcp import types

        self.seen.append(_dump(params))
        return types.ElicitResult.model_validate(self.answer or {"action": "decline"})


async def _py2_pages(fetch, field: str) -> list[dict]:
    items, cursor = [], None
    while True:
        page = await fetch(cursor=cursor, cache_mode="bypass")
        items.extend(_dump(i) for i in getattr(page, field))
        cursor = page.next_cursor
        if cursor is None:
            return items


async def _py2_surface(client, step):
    """The steps beyond tools: resources, templates, reads, prompts and completions."""
    from mcp import types

    if step["op"] == "resources":
        return {
            "resources": await _py2_pages(client.list_resources, "resources"),
            "templates": await _py2_pages(client.list_resource_templates, "resource_templates"),
        }
    if step["op"] == "read":
        return {"result": _dump(await client.read_resource(step["uri"], cache_mode="bypass"))}
    if step["op"] == "prompts":
        return {"prompts": await _py2_pages(client.list_prompts, "prompts")}
    if step["op"] == "prompt":
        return {"result": _dump(await client.get_prompt(step["name"], step.get("arguments")))}
    if step["op"] == "complete":
        ref = step["ref"]
        kind = (
            types.PromptReference
            if ref["type"] == "ref/prompt"
            else types.ResourceTemplateReference
        )
        argument = {"name": step["argument"]["name"], "value": step["argument"]["value"]}
        return {"result": _dump(await client.complete(kind.model_validate(ref), argument))}
    return None


async def _py2_step(client, step):
    from mcp.shared.exceptions import MCPDeprecationWarning

    if (answer := await _py2_surface(client, step)) is not None:
        return answer

    if step["op"] == "list":
        tools, cursor = [], None
        while True:
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            tools.extend(_dump(t) for t in page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return {"tools": tools}
    if step["op"] == "ping":
        with warnings.catch_warnings():  # deprecated for 2026-07-28, warned in legacy mode too
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.send_ping()
        return {"ping": True}
    if step["op"] != "call":
        raise ValueError(f"unknown step {step!r}")

    progress, first = [], anyio.Event()

    async def on_progress(value, total, message):
        seen = {"progress": value}
        if total is not None:
            seen["total"] = total
        if message is not None:
            seen["message"] = message
        progress.append(seen)
        first.set()

    wants_progress = step.get("progress") or step.get("cancel")
    call = client.call_tool(step["name"], step.get("arguments", {}), progress_callback=on_progress)
    if not step.get("cancel"):
        result = _dump(await call)
        return {"result": result, "progress": progress} if wants_progress else {"result": result}
    outcome = {}

    async def calling():
        outcome["result"] = _dump(await call)

    async with anyio.create_task_group() as group:  # cancelling sends notifications/cancelled
        group.start_soon(calling)
        await first.wait()
        group.cancel_scope.cancel()
    if "result" in outcome:
        return {"result": outcome["result"], "progress": progress}
    return {"cancelled": True, "progress": progress}


def conformance(url: str, spec_version: str, header: str, scenario: str | None = None):
    """Run the suite's server scenarios against ``url`` at ``spec_version``: ``scenario``
    alone, else every one the suite has at that version (``--suite all``: some, such as
    json-schema-2020-12, are outside the default "active" set). Every request it makes carries
    ``header`` (``"Authorization: Bearer ..."``; the suite has no option for it, see
    ``conformance_auth.mjs``). Answers ``{scenario: checks}``, each check with ``id``,
    ``status`` (SUCCESS / FAILURE / WARNING / SKIPPED / INFO), ``errorMessage``, ``details``.
    """
    with tempfile.TemporaryDirectory() as out:
        which = ["--scenario", scenario] if scenario else ["--suite", "all"]
        command = [
            NODE,
            "--import",
            os.path.join(HERE, "conformance_auth.mjs"),
            os.path.join(CONFORMANCE_PACKAGE, "dist", "index.js"),
            "server",
            "--url",
            url,
            *which,
            "--spec-version",
            spec_version,
            "--output-dir",
            out,
        ]
        env = {
            **os.environ,
            "MCPADMIN_AUTH_HEADER": header,
            "MCPADMIN_CONFORMANCE_PACKAGE": os.path.join(CONFORMANCE_PACKAGE, "package.json"),
            "NO_COLOR": "1",
        }
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT * 3)
        results = {}
        for folder in os.listdir(out):
            # server-<scenario>-<ISO time with dashes>, e.g. server-ping-2026-11-29T21-52-14-833Z
            name = re.fullmatch(r"server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z", folder)
            with open(os.path.join(out, folder, "checks.json"), encoding="utf-8") as f:
                results[name.group(1) if name else folder] = json.load(f)
        if not results or (scenario and scenario not in results):
            raise AssertionError(
                f"conformance at {spec_version} wrote no results (exit {done.returncode})\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        return results


def failures(checks: list[dict]) -> list[str]:
    """The checks that did not pass, as ``"id: message"`` lines (WARNING counts as a failure:
    the suite says what the server SHOULD do)."""
    return [
        f"{c['id']}: {c.get('errorMessage') or c['status']}"
        for c in checks
        if c["status"] in ("FAILURE", "WARNING")
    ]


@contextlib.contextmanager
def serve_gateway(instance_path: str, database_uri: str, workers: int = 2):
    """gunicorn with uvicorn workers (as in production) serving the ASGI application of
    ``instance_path`` (its keys, so agent keys made in the test verify) on ``database_uri``;
    yields its base URL,
    ``http://localhost:PORT``, which is also its ``PUBLIC_BASE_URL`` (the conformance suite's
    DNS-rebinding scenario needs a localhost URL and sends that Host and Origin)."""
    from tests.peers import free_port

    port = free_port()
    base = f"http://localhost:{port}"
    env = {
        **os.environ,
        "MCPADMIN_SQLALCHEMY_DATABASE_URI": database_uri,
        "MCPADMIN_PUBLIC_BASE_URL": base,
        "MCPADMIN_AUTO_MIGRATE": "false",
        "MCPADMIN_ALLOW_PRIVATE_NETWORKS": "true",
        "MCPADMIN_ALLOW_HTTP_LOOPBACK": "true",
        # Streams the suite opens and leaves: end them soon (the default holds one 5 minutes).
        "MCPADMIN_GATEWAY_STREAM_SECONDS": "3",
        "MCPADMIN_GATEWAY_WATCH_SECONDS": "0.5",
    }
    factory = f"mcpadmin.gateway.app:create_asgi_app(instance_path={instance_path!r})"
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - read back on failure
    server = subprocess.Popen(
        [GUNICORN, "-w", str(workers), "-k", "mcpadmin.gateway.worker.Worker",
         "-b", f"127.0.0.1:{port}", factory],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    try:
        deadline, ready = time.monotonic() + 60, False
        while not ready and time.monotonic() < deadline and server.poll() is None:
            try:  # the port listens before the workers have loaded the app
                ready = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30).ok
            except requests.RequestException:
                time.sleep(0.2)
        if not ready:
            log.seek(0)
            raise RuntimeError(f"gunicorn did not start:\n{log.read()}")
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def seed_agent(
    connectors,
    name: str = "Agent",
    keep_tool_names: bool = False,
    all_prompts: bool = False,
    all_resources: bool = False,
):
    """In the app context: sync each of ``connectors`` (unsaved ``Connector`` rows), give a
    new agent every tool of each, and a key; with ``all_prompts`` every prompt the sync stored
    too, with ``all_resources`` all of each connector's resources and templates (``["*"]``).
    Answers ``(agent_id, key, tool_names)``, the names as the connectors' servers give them."""
    from mcpadmin.extensions import db
    from mcpadmin.models import Agent, AgentConnection, CatalogItem
    from mcpadmin.services import agent_keys, sync

    agent = Agent(name=name, keep_tool_names=keep_tool_names)
    db.session.add_all([agent, *connectors])
    db.session.flush()
    names = []
    for connector in connectors:
        sync.sync_tools(connector)
        tools = sorted(t.name for t in connector.tools)
        connection = AgentConnection(agent=agent, connector=connector, enabled_tools=tools)
        db.session.add(connection)
        if all_prompts:
            prompts = db.session.scalars(
                db.select(CatalogItem.key).filter_by(connector_id=connector.id, kind="prompt")
            )
            connection.enabled_prompts = sorted(prompts)
        if all_resources:
            connection.enabled_resources = ["*"]
        names.extend(tools)
    _, key = agent_keys.create(agent, "tests")
    db.session.commit()
    return agent.id, key, names
