"""A legacy-only MCP server on the official SDK's 1.x line (1.30.0, ``.venv-mcp1``) whose tool
asks the client mid-call, as 2025 servers do: ``confirm(action)`` elicits ``{"ok": bool}`` on
the call's event stream and says ``accepted <action>: ok=<ok>``, or the action the user took,
or ``refused <code>: <message>`` when the client answered with an error.

Run with ``.venv-mcp1/bin/python``: ``asking_legacy_server.py --port N``.
"""

import argparse

from mcp.server.fastmcp import Context, FastMCP
from mcp.shared.exceptions import McpError
from pydantic import BaseModel


class Confirmation(BaseModel):
    ok: bool


def build(port: int) -> FastMCP:
    server = FastMCP("asking-legacy", host="127.0.0.1", port=port, log_level="WARNING")

    @server.tool()
    async def confirm(action: str, ctx: Context) -> str:
        try:
            answer = await ctx.elicit(f"Really {action}?", Confirmation)
        except McpError as exc:
            return f"refused {exc.error.code}: {exc.error.message}"
        if answer.action == "accept":
            return f"accepted {action}: ok={answer.data.ok}"
        return answer.action

    return server


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    build(args.port).run("streamable-http")


if __name__ == "__main__":
    main()
