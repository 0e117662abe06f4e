"""The ``mcp`` 1.30.0 Python client (legacy era only), as an agent would use it; runs under
``.venv-mcp1``.

    .venv-mcp1/bin/python py1_client.py URL KEY < steps.json

Same steps and output as ``ts_client.mjs``: one JSON object per step on its own line. The 1.x
client has no way to cancel a request: a cancelling step stops waiting and sends
``notifications/cancelled`` itself, with the id the session gave the call. It declares the
elicitation capability and answers each ``elicitation/create`` with the ``elicit`` answer of
the step running (else declines), reporting the requests it saw under ``"elicited"``.
"""

import json
import sys

import anyio
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from pydantic import AnyUrl


def dump(model) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class Elicitation:
    """Answers the server's elicitation requests with the running step's ``elicit``."""

    def __init__(self):
        self.answer, self.seen = None, []

    async def __call__(self, context, params: types.ElicitRequestParams):
        self.seen.append(dump(params))
        return types.ElicitResult.model_validate(self.answer or {"action": "decline"})


async def pages(fetch, field: str) -> list[dict]:
    items, cursor = [], None
    while True:
        page = await fetch(cursor)
        items.extend(dump(i) for i in getattr(page, field))
        cursor = page.nextCursor
        if cursor is None:
            return items


async def list_all(session: ClientSession) -> dict:
    tools, cursor = [], None
    while True:
        page = await session.list_tools(cursor=cursor)
        tools.extend(dump(t) for t in page.tools)
        cursor = page.nextCursor
        if cursor is None:
            return {"tools": tools}


async def call(session: ClientSession, step: dict) -> dict:
    progress = []
    first = anyio.Event()

    async def on_progress(value, total, message):
        seen = {"progress": value}
        if total is not None:
            seen["total"] = total
        if message is not None:
            seen["message"] = message
        progress.append(seen)
        first.set()

    wants_progress = step.get("progress") or step.get("cancel")
    callback = on_progress if wants_progress else None
    name, arguments = step["name"], step.get("arguments", {})
    if not step.get("cancel"):
        result = await session.call_tool(name, arguments, progress_callback=callback)
        return (
            {"result": dump(result), "progress": progress}
            if wants_progress
            else {"result": dump(result)}
        )

    request_id = session._request_id  # the id send_request is about to use
    outcome = {}

    async def calling():
        outcome["result"] = dump(
            await session.call_tool(name, arguments, progress_callback=callback)
        )

    async with anyio.create_task_group() as group:
        group.start_soon(calling)
        await first.wait()
        group.cancel_scope.cancel()
    if "result" in outcome:
        return {"result": outcome["result"], "progress": progress}
    cancelled = types.CancelledNotification(
        params=types.CancelledNotificationParams(requestId=request_id, reason="test client")
    )
    await session.send_notification(types.ClientNotification(cancelled))
    return {"cancelled": True, "progress": progress}


async def run(session: ClientSession, step: dict, elicitation: Elicitation) -> dict:
    if step["op"] == "list":
        return await list_all(session)
    if step["op"] == "call":
        elicitation.answer, elicitation.seen = step.get("elicit"), []
        answer = await call(session, step)
        return {**answer, "elicited": elicitation.seen} if "elicit" in step else answer
    if step["op"] == "resources":
        return {
            "resources": await pages(session.list_resources, "resources"),
            "templates": await pages(session.list_resource_templates, "resourceTemplates"),
        }
    if step["op"] == "read":
        return {"result": dump(await session.read_resource(AnyUrl(step["uri"])))}
    if step["op"] == "prompts":
        return {"prompts": await pages(session.list_prompts, "prompts")}
    if step["op"] == "prompt":
        return {"result": dump(await session.get_prompt(step["name"], step.get("arguments")))}
    if step["op"] == "complete":
        ref = step["ref"]
        ref = (
            types.PromptReference
            if ref["type"] == "ref/prompt"
            else types.ResourceTemplateReference
        )(**ref)
        argument = step["argument"]
        result = await session.complete(ref, {"name": argument["name"], "value": argument["value"]})
        return {"result": dump(result)}
    if step["op"] == "ping":
        await session.send_ping()
        return {"ping": True}
    raise ValueError(f"unknown step {step!r}")


async def main(url: str, key: str, steps: list[dict]):
    headers = {"Authorization": f"Bearer {key}"}
    elicitation = Elicitation()
    async with (
        streamablehttp_client(url, headers=headers) as (read, write, _),
        ClientSession(read, write, elicitation_callback=elicitation) as session,
    ):
        await session.initialize()
        for step in steps:
            try:
                answer = await run(session, step, elicitation)
            except Exception as error:  # noqa: BLE001 - every failure is reported per step
                answer = {"error": str(error) or type(error).__name__}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    try:
        anyio.run(main, sys.argv[1], sys.argv[2], json.load(sys.stdin))
    except Exception as error:  # noqa: BLE001 - a failed connect, reported as ts_client does
        print(json.dumps({"error": repr(error)}), flush=True)
        sys.exit(2)
