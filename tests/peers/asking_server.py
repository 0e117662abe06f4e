"""An MCP server on the official SDK's 2.x line whose tools ask the client for something while
they run: elicitation, sampling and roots. It serves both eras on one endpoint, and asks the
way each era does: a 2025 session gets a request on the call's event stream, a 2026-07-28
request an ``input_required`` result to retry with the answers (the SDK's ``Resolve``
markers do both [26/mrtr]).

Tools:
- ``confirm(action)``: elicits ``{"ok": bool}``; says ``accepted <action>: ok=<ok>`` or the
  action the user took (``declined``, ``cancelled``).
- ``summarize(text)``: samples the client's model; says ``summary: <its text>``.
- ``where()``: lists the client's roots; says ``roots: <uri>, <uri>``.
- ``ask_plainly()``: a 2025 session only: elicits with ``ctx.elicit`` and says what came back,
  or ``refused <code>: <message>`` when the client answered with an error.

Run: ``python asking_server.py --port N``.
"""

import argparse
from typing import Annotated

import mcp_types as types
import uvicorn
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Elicit, ListRoots, MCPServer, Resolve, Sample
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel


class Confirmation(BaseModel):
    ok: bool


async def ask_confirmation(action: str) -> Elicit[Confirmation]:
    return Elicit(f"Really {action}?", Confirmation)


async def ask_model(text: str) -> Sample:
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=text))
    return Sample([message], max_tokens=50)


async def ask_roots() -> ListRoots:
    return ListRoots()


def build() -> MCPServer:
    server = MCPServer("asking")

    @server.tool()
    async def confirm(
        action: str,
        answer: Annotated[ElicitationResult[Confirmation], Resolve(ask_confirmation)],
    ) -> str:
        if isinstance(answer, AcceptedElicitation):
            return f"accepted {action}: ok={answer.data.ok}"
        return f"{answer.action}d" if answer.action == "decline" else f"{answer.action}led"

    @server.tool()
    async def summarize(
        text: str, sampled: Annotated[types.CreateMessageResult, Resolve(ask_model)]
    ) -> str:
        content = sampled.content
        return f"summary: {getattr(content, 'text', content)}"

    @server.tool()
    async def where(roots: Annotated[types.ListRootsResult, Resolve(ask_roots)]) -> str:
        return "roots: " + ", ".join(str(root.uri) for root in roots.roots)

    @server.tool()
    async def ask_plainly(ctx: Context) -> str:
        try:
            answer = await ctx.elicit("Proceed?", Confirmation)
        except MCPError as exc:
            return f"refused {exc.error.code}: {exc.error.message}"
        return f"answered {answer.action}"

    return server


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = build().streamable_http_app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
