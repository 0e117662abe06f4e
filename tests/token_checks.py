"""What the real OAuth peer thinks of the tokens the app holds: whether ``/mcp`` accepts an
access token, and which refresh token the peer issued last."""

import re

import requests

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "token-check", "version": "0"},
    },
}


def accepted(peer, access_token: str) -> bool:
    """Whether the peer's ``/mcp`` lets an ``initialize`` through with this bearer token
    (anything but 401)."""
    response = requests.post(
        peer.mcp_url,
        json=INITIALIZE,
        headers={
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json, text/event-stream",
        },
        timeout=10,
        stream=True,
    )
    with response:
        return response.status_code != 401


def newest_refresh_token(peer) -> str:
    """The refresh token the peer issued last (from its ``issued AT RT`` log lines).

    :raise AssertionError: the peer issued none.
    """
    issued = re.findall(r"issued at-\S+ (rt-\S+)", peer.log())
    assert issued, peer.log()
    return issued[-1]
