"""Fixtures for the OpenID Connect provider peer (``oidc_provider.mjs``: the npm
``oidc-provider`` package, run with the Node of ``.node/clients``).

- ``oidc_provider`` (session): one provider for the whole run, its issuer
  ``http://127.0.0.1:PORT``, one confidential client (``CLIENT_ID``/``CLIENT_SECRET``) whose
  redirect URI is the test app's, and the people of ``ACCOUNTS``.
- ``use_sso`` (function): ``use_sso(**fields)`` turns single sign-on on in the test database
  against that provider (``SSO`` settings, ``fields`` overriding them).

``OidcProvider.sign_in`` fills in the provider's own login and consent pages with
``requests``, following its real redirects, and returns the URL it sends the browser back to.
"""

import html
import json
import re
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import SsoSettings
from tests.peers import Peer, start

ROOT = Path(__file__).resolve().parents[2]
NODE = str(ROOT / ".node" / "clients" / "node_modules" / "node" / "bin" / "node")
SCRIPT = "oidc_provider.mjs"
CLIENT_ID = "mcpadmin-test"
CLIENT_SECRET = "oidc-peer-client-secret-0123456789"
# The test app's callback (its PUBLIC_BASE_URL is the default, http://127.0.0.1:5000).
TEST_APP_CALLBACK = "http://127.0.0.1:5000/sso/callback"
# Who can sign in at the provider (any password), with the claims its ID tokens carry.
ACCOUNTS = {
    "alice": {"email": "alice@example.com", "email_verified": True, "name": "Alice Example",
              "groups": ["mcp-owners", "engineering"]},
    "oscar": {"email": "oscar@example.com", "email_verified": True, "name": "Oscar Example",
              "groups": ["mcp-operators"]},
    "mia": {"email": "mia@example.com", "email_verified": True, "name": "Mia Example",
            "groups": ["engineering"]},
    "eve": {"email": "eve@elsewhere.test", "email_verified": True, "name": "Eve Elsewhere",
            "groups": ["mcp-owners"]},
    "uma": {"email": "uma@example.com", "email_verified": False, "name": "Uma Unverified",
            "groups": ["engineering"]},
}  # fmt: skip
# The settings ``use_sso`` stores: groups map to roles, example.com only, members by default.
SSO = {
    "enabled": True,
    "client_id": CLIENT_ID,
    "label": "Test IdP",
    "scopes": "openid email profile",
    "allowed_domains": ["example.com"],
    "role_claim": "groups",
    "role_map": {"owner": ["mcp-owners"], "operator": ["mcp-operators"],
                 "auditor": ["mcp-auditors"]},
    "default_role": "member",
    "local_passwords": True,
}  # fmt: skip
_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
_ABORT_LINK = re.compile(r'href="([^"]*/abort)"')


class OidcProvider:
    """A running ``oidc_provider.mjs``.

    :raise requests.RequestException: from every method if the provider is gone.
    """

    def __init__(self, peer: Peer):
        self.peer = peer

    @property
    def issuer(self) -> str:
        return self.peer.base_url

    def next_id_token(self, mode: str):
        """Alter the next token response's ID token (modes: see oidc_provider.mjs)."""
        self._control("/__test/next-id-token", {"mode": mode})

    def allow_redirect_uri(self, uri: str):
        self._control("/__test/redirect-uri", {"uri": uri})

    def sign_in(self, authorization_url: str, login: str) -> str:
        """Sign ``login`` in on the provider's login page, consent, and return the URL the
        provider sends the browser back to (the app's callback, with code or error)."""
        session = requests.Session()
        page = self._follow(session, session.get(authorization_url, allow_redirects=False))
        page = self._follow(session, self._submit(session, page, prompt="login", login=login,
                                                  password="any password"))  # fmt: skip
        if isinstance(page, requests.Response):  # the consent page (skipped when granted)
            page = self._follow(session, self._submit(session, page, prompt="consent"))
        return page

    def cancel(self, authorization_url: str) -> str:
        """Open the login page, choose its "Cancel" link, and return where the provider sends
        the browser back to (the app's callback with ``error=access_denied``)."""
        session = requests.Session()
        page = self._follow(session, session.get(authorization_url, allow_redirects=False))
        abort = urljoin(page.url, html.unescape(_ABORT_LINK.search(page.text).group(1)))
        return self._follow(session, session.get(abort, allow_redirects=False))

    def log(self) -> str:
        return self.peer.log()

    def stop(self):
        self.peer.stop()

    def _submit(self, session, page, **fields):
        action = urljoin(page.url, html.unescape(_FORM_ACTION.search(page.text).group(1)))
        return session.post(action, data=fields, allow_redirects=False)

    def _follow(self, session, response):
        """Follow the provider's redirects; the page it stops at, or the URL of a redirect
        that leaves the provider."""
        while response.is_redirect:
            target = urljoin(response.url, response.headers["Location"])
            if urlsplit(target).netloc != urlsplit(self.issuer).netloc:
                return target
            response = session.get(target, allow_redirects=False)
        assert response.status_code == 200, response.text[:2000]
        return response

    def _control(self, path, body):
        request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1:PORT)
            self.issuer + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert json.load(response) == {"ok": True}


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory):
    config = tmp_path_factory.mktemp("oidc") / "config.json"
    config.write_text(json.dumps({
        "client": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "redirect_uris": [TEST_APP_CALLBACK]},
        "accounts": ACCOUNTS,
    }))  # fmt: skip
    provider = OidcProvider(start(SCRIPT, "--config", str(config), python=NODE))
    yield provider
    provider.stop()


@pytest.fixture
def use_sso(app, oidc_provider):
    """``use_sso(**fields)``: store ``SSO`` settings (with ``fields``) against the provider."""

    def configure(**fields):
        with app.app_context():
            settings = db.session.get(SsoSettings, 1) or SsoSettings(id=1)
            values = {**SSO, "issuer": oidc_provider.issuer, **fields}
            for name, value in values.items():
                setattr(settings, name, value)
            settings.client_secret_enc = seal(CLIENT_SECRET)
            db.session.add(settings)
            db.session.commit()

    return configure
