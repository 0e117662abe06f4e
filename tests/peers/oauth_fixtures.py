"""Fixtures for the OAuth-protected MCP peer (``oauth_server.py``; see tests/peers/__init__.py).

- ``oauth_peer`` (session): one peer with default options, shared by the whole run. Tests that
  read its counters should take ``fresh_oauth_peer`` instead.
- ``fresh_oauth_peer`` (function): the same peer, counters zeroed before the test.
- ``start_oauth_peer`` (function): ``start_oauth_peer(access_ttl=1, token_delay=0.5, ...)``
  starts a peer of its own with those options; stopped after the test.

Each yields an ``OAuthPeer``.
"""

import json
import urllib.request
from typing import Any

import pytest

from tests.peers import Peer, start

SCRIPT = "oauth_server.py"


class OAuthPeer:
    """A running ``oauth_server.py``: its URLs and its peer-only control routes.

    :raise urllib.error.URLError: from every control method if the peer is gone.
    """

    def __init__(self, peer: Peer):
        self.peer = peer

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: also the issuer, exactly as the metadata spells it."""
        return self.peer.base_url

    @property
    def issuer(self) -> str:
        return self.peer.base_url

    @property
    def mcp_url(self) -> str:
        """The protected MCP endpoint, also the PRM's ``resource``."""
        return self.peer.base_url + "/mcp"

    def stats(self) -> dict[str, Any]:
        """``GET /_peer/stats``: see ``Stats.as_json`` in oauth_server.py."""
        return self._call("GET", "/_peer/stats")

    def reset(self) -> dict[str, Any]:
        """Zero the counters (clients and tokens stay); return the fresh stats."""
        return self._call("POST", "/_peer/reset")

    def expire_tokens(self) -> int:
        """Make every access token issued so far expired; return how many."""
        return self._call("POST", "/_peer/expire")["expired"]

    def revoke_grants(self) -> int:
        """Kill every refresh token, so the next refresh answers ``invalid_grant``."""
        return self._call("POST", "/_peer/revoke-grants")["revoked"]

    def log(self) -> str:
        """The peer's stdout and stderr so far."""
        return self.peer.log()

    def stop(self) -> None:
        self.peer.stop()

    def _call(self, method: str, path: str) -> dict[str, Any]:
        url = self.base_url + path  # always http://127.0.0.1:PORT
        request = urllib.request.Request(url, method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.load(response)


def start_peer(
    access_ttl: int | None = None,
    token_delay: float | None = None,
    refresh_grace: float | None = None,
    **flags: bool,
):
    """Start ``oauth_server.py``; ``flags`` are its switches (``json_response=True``,
    ``validate_resource=True``).

    :raise RuntimeError: the peer did not start (see ``tests.peers.start``).
    """
    args = []
    if access_ttl is not None:
        args += ["--access-ttl", str(access_ttl)]
    if token_delay is not None:
        args += ["--token-delay", str(token_delay)]
    if refresh_grace is not None:
        args += ["--refresh-grace", str(refresh_grace)]
    args += ["--" + name.replace("_", "-") for name, on in flags.items() if on]
    return OAuthPeer(start(SCRIPT, *args))


@pytest.fixture(scope="session")
def oauth_peer():
    peer = start_peer()
    yield peer
    peer.stop()


@pytest.fixture
def fresh_oauth_peer(oauth_peer):
    oauth_peer.reset()
    return oauth_peer


@pytest.fixture
def start_oauth_peer():
    started = []

    def starter(**options) -> OAuthPeer:
        peer = start_peer(**options)
        started.append(peer)
        return peer

    yield starter
    for peer in started:
        peer.stop()
