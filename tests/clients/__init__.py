"""The official MCP clients, driven from pytest as an agent would drive them, and the official
conformance suite. Every client takes the same steps (see ``ts_client.mjs``) and answers one
dict per step:

- ``run_ts`` runs the TypeScript SDK client (``ts_client.mjs``, Node from ``.node/clients``);
- ``run_py1`` runs the 1.30.0 Python client (``py1_client.py`` under ``.venv-mcp1``);
- ``run_py2`` runs the 2.x Python client in this process, ``mode="auto"`` (probes
  ``server/discover``, falls back to ``initialize``) or ``mode="legacy"`` (``initialize`` only);
- ``conformance`` runs one server scenario of the suite at one protocol version and answers
  its checks.

``scripts/client-deps`` installs the Node side; ``scripts/test`` runs it.
"""

import json
import os
import subprocess
import tempfile

import anyio

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NODE_PREFIX = os.path.join(ROOT, ".node", "clients")
NODE = os.path.join(NODE_PREFIX, "node_modules", "node", "bin", "node")
CONFORMANCE_PACKAGE = os.path.join(
    NODE_PREFIX, "node_modules", "@modelcontextprotocol", "conformance"
)
PY1 = os.path.join(ROOT, ".venv-mcp1", "bin", "python")
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
    return anyio.run(_py2, url, key, steps, mode)


async def _py2(url, key, steps, mode):
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    answers = []
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        for step in steps:
            try:
                answers.append(await _py2_step(client, step))
            except Exception as error:  # noqa: BLE001 - every failure is reported per step
                answers.append({"error": str(error) or type(error).__name__})
        answers.append({"protocol_version": client.session.protocol_version})
    return answers


def _dump(model) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def _py2_step(client, step):
    if step["op"] == "list":
        tools, cursor = [], None
        while True:
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            tools.extend(_dump(t) for t in page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return {"tools": tools}
    if step["op"] == "ping":
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


def conformance(url: str, scenario: str, spec_version: str, header: str) -> list[dict]:
    """Run the suite's server ``scenario`` against ``url`` at ``spec_version``; every request
    it makes carries ``header`` (``"Authorization: Bearer ..."``; the suite has no option for
    it, see ``conformance_auth.mjs``). Answers the checks (each with ``id``, ``status``
    SUCCESS / FAILURE / WARNING / SKIPPED / INFO, ``errorMessage``, ``details``)."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            NODE,
            "--import",
            os.path.join(HERE, "conformance_auth.mjs"),
            os.path.join(CONFORMANCE_PACKAGE, "dist", "index.js"),
            "server",
            "--url",
            url,
            "--scenario",
            scenario,
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
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        results = [
            os.path.join(folder, "checks.json")
            for folder, _, files in os.walk(out)
            if "checks.json" in files
        ]
        if len(results) != 1:
            raise AssertionError(
                f"conformance {scenario} at {spec_version} wrote {len(results)} results "
                f"(exit {done.returncode})\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        with open(results[0], encoding="utf-8") as f:
            return json.load(f)


def failures(checks: list[dict]) -> list[str]:
    """The checks that did not pass, as ``"id: message"`` lines (WARNING counts as a failure:
    the suite says what the server SHOULD do)."""
    return [
        f"{c['id']}: {c.get('errorMessage') or c['status']}"
        for c in checks
        if c["status"] in ("FAILURE", "WARNING")
    ]
