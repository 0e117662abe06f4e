"""Fixtures for the mcp peers (see tests/peers/__init__.py): real MCP servers from the
official SDK, started once per session. ``mcp_server.py`` runs on the 2.x line in ``.venv``
(both eras); ``mcp_legacy_server.py`` on 1.30.0 in ``.venv-mcp1`` (legacy only), which
``scripts/test`` installs."""

import json
import os
import tempfile

import pytest
import requests

from . import start

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEGACY_PYTHON = os.path.join(ROOT, ".venv-mcp1", "bin", "python")


class McpPeer:
    """A running peer: its MCP URL, the requests it received, and (with a tools file or a
    surface file) the tool list or the resources, templates and prompts it serves."""

    def __init__(self, peer, tools_file=None, surface_file=None):
        self.peer, self.tools_file, self.surface_file = peer, tools_file, surface_file

    @property
    def url(self) -> str:
        return self.peer.base_url + "/mcp"

    def requests(self) -> list[list]:
        """Every request so far, as ``[http_method, jsonrpc_method]``."""
        return requests.get(self.peer.base_url + "/_stats", timeout=5).json()["requests"]

    def set_tools(self, tools: list[dict]):
        _write(self.tools_file, tools)

    def set_surface(self, surface: dict):
        """Serve ``{"resources": [...], "templates": [...], "prompts": [...]}`` (wire dicts)
        from the next request on."""
        _write(self.surface_file, surface)


def surface_fixtures() -> dict:
    """The resources, templates and prompts a peer serves by default (``surface.py``), as a
    surface file's content, for a test to change and ``set_surface``."""
    from .surface import PROMPTS, RESOURCES, TEMPLATES

    return json.loads(json.dumps({"resources": RESOURCES, "templates": TEMPLATES,
                                  "prompts": PROMPTS}))  # fmt: skip


def _write(path, content):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f)


def _temp(content) -> str:
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    _write(path, content)
    return path


def _start(script, *args, python=None, tools=None, surface=None):
    """Start an MCP peer; ``tools`` (a tool list) and ``surface`` (a surface file's content)
    go to files the test can rewrite (``set_tools``, ``set_surface``)."""
    tools_file = _temp(tools) if tools is not None else None
    surface_file = _temp(surface) if surface is not None else None
    if tools_file:
        args = (*args, "--tools-file", tools_file)
    if surface_file:
        args = (*args, "--surface-file", surface_file)
    if python is not None and not os.path.exists(python):
        raise RuntimeError(f"{python} is missing: run scripts/test to install the mcp 1.x peer")
    peer = start(script, *args, **({"python": python} if python else {}))
    return McpPeer(peer, tools_file, surface_file)


def _stop(mcp_peer):
    mcp_peer.peer.stop()
    for path in (mcp_peer.tools_file, mcp_peer.surface_file):
        if path:
            os.unlink(path)


def _tools_only(script, *args, **kwargs):
    return _start(script, "--no-surface", *args, **kwargs)


# The fixtures below serve tools only (``--no-surface``): their request counts are the tool
# listing's. ``surface_peer`` and ``legacy_surface_peer`` serve resources and prompts too.


@pytest.fixture(scope="session")
def modern_peer():
    """2.x, SSE mode, a notification before each tools/list answer (so both eras answer with
    an event stream); its tool list comes from a file tests rewrite."""
    from .mcp_wrap import generated_tools

    peer = _tools_only("mcp_server.py", "--notify", "--ttl-ms", "600000", tools=generated_tools(3))
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def json_peer():
    """2.x in JSON-response mode."""
    peer = _tools_only("mcp_server.py", "--json", "--tools", "4")
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def legacy_peer():
    """1.30.0 (legacy only), stateful, SSE responses; tool list from a file."""
    from .mcp_wrap import generated_tools

    peer = _tools_only("mcp_legacy_server.py", python=LEGACY_PYTHON, tools=generated_tools(3))
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def stateless_legacy_peer():
    """1.30.0, stateless (no session id), JSON responses."""
    peer = _tools_only("mcp_legacy_server.py", "--stateless", "--json", "--tools", "2",
                       python=LEGACY_PYTHON)  # fmt: skip
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def bearer_peer():
    """2.x requiring ``Authorization: Bearer peer-token``."""
    peer = _tools_only("mcp_server.py", "--bearer", "peer-token", "--tools", "2")
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def api_key_peer():
    """1.30.0 requiring the header ``X-Api-Key: peer-key``."""
    peer = _tools_only("mcp_legacy_server.py", "--api-key", "X-Api-Key=peer-key", "--tools", "2",
                       python=LEGACY_PYTHON)  # fmt: skip
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def paged_peer():
    """2.x with 250 tools, 40 per page (7 pages)."""
    peer = _tools_only("mcp_server.py", "--tools", "250", "--page-size", "40")
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def dropping_peer():
    """2.x that cuts every tools/list answer off mid-stream."""
    peer = _tools_only("mcp_server.py", "--drop")
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def slow_peer():
    """2.x that waits 3 seconds before answering tools/list."""
    peer = _tools_only("mcp_server.py", "--slow", "3")
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def surface_peer():
    """2.x (both eras) serving ``surface.py``'s resources, templates and prompts from a file
    tests rewrite (``set_surface``), and 3 tools."""
    from .mcp_wrap import generated_tools

    peer = _start("mcp_server.py", tools=generated_tools(3), surface=surface_fixtures())
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def legacy_surface_peer():
    """1.30.0 (legacy only) serving the same, from a file tests rewrite."""
    from .mcp_wrap import generated_tools

    peer = _start("mcp_legacy_server.py", python=LEGACY_PYTHON, tools=generated_tools(3),
                  surface=surface_fixtures())  # fmt: skip
    yield peer
    _stop(peer)
