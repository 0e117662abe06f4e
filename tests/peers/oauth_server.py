"""An OAuth-protected MCP server for the integration tests, built from the ``mcp`` SDK.

Run as ``python oauth_server.py --port N [--access-ttl S] [--token-delay S] [--json-response]
[--validate-resource] [--consent]``. Everything OAuth is the SDK's own (``MCPServer`` with an
``auth_server_provider`` and ``AuthSettings``): RFC 8414 metadata, ``/authorize``, ``/token``
(PKCE S256 checked by the SDK), ``/register`` (RFC 7591), ``/revoke`` (RFC 7009), the RFC 9728
protected-resource metadata and the bearer check that answers 401 on ``/mcp``. This file adds:

- ``MemoryProvider``: the SDK's provider protocol in memory. ``/authorize`` approves at once
  (redirects to the client with ``code`` and ``state``), or with ``--consent`` sends the browser
  to a consent page whose Approve and Deny buttons answer with a code or ``access_denied``
  (RFC 6749 §4.1.2.1); refresh rotates both
  tokens and the old refresh token then answers ``invalid_grant``; ``--token-delay`` sleeps
  inside a refresh so concurrent refreshes pile up behind the first; ``--refresh-grace S`` keeps
  a rotated refresh token working for S more seconds; ``--hang-refresh`` never answers a refresh.
- ``Recorder``: ASGI middleware that counts what reaches each endpoint (failed requests too) and
  keeps the raw parameters of the last authorization and token requests, before the SDK parses
  them (the SDK drops what its models do not name).
- Peer-only routes, unauthenticated: ``GET /_peer/stats`` (shape in ``Stats.as_json``),
  ``POST /_peer/reset`` (zero the counters; clients and tokens stay), ``POST /_peer/expire``
  (every access token issued so far is expired now), ``POST /_peer/revoke-grants`` (every refresh
  token dies, so the next refresh answers ``invalid_grant``).

Tools on ``/mcp``: ``echo(text)``, ``add(a, b)``, ``whoami()`` (client id, scopes, resource and
the access token the call came with); resource ``peer://whoami`` (the access token the read
came with, as a SHA-256).
"""

import argparse
import asyncio
import hashlib
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SCOPES = ["mcp:read", "mcp:write"]
REQUIRED_SCOPES = ["mcp:read"]  # what /mcp demands; also the PRM's scopes_supported
CODE_TTL = 300
SUBJECT = "peer-user"  # the one resource owner who "approves" every request


def log(*parts: object) -> None:
    print("[oauth-peer]", *parts, flush=True)


def params_dict(pairs: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Request parameters as a dict: a value once is a string, a repeated one a list."""
    out: dict[str, str | list[str]] = {}
    for key, value in pairs:
        if key not in out:
            out[key] = value
        elif isinstance(out[key], list):
            out[key].append(value)  # type: ignore[union-attr]
        else:
            out[key] = [out[key], value]  # type: ignore[list-item]
    return out


@dataclass
class Stats:
    """What the peer saw since start or the last reset."""

    token_requests: dict[str, int] = field(
        default_factory=lambda: {"authorization_code": 0, "refresh_token": 0}
    )
    registrations: int = 0
    authorize_requests: int = 0
    revocations: int = 0
    revoked: list[str] = field(default_factory=list)
    last_authorize: dict[str, Any] | None = None
    last_token_request: dict[str, Any] | None = None
    last_token_client_auth: str | None = None
    mcp_requests: int = 0
    mcp_unauthorized: int = 0

    def as_json(self, provider: "MemoryProvider") -> dict[str, Any]:
        """The ``/_peer/stats`` document:

        - ``token_requests``: POST /token by ``grant_type``, failed ones too (other grant types
          under their own key, a request without one under ``""``);
        - ``registrations``, ``authorize_requests``, ``revocations``, ``mcp_requests``: requests
          that reached those endpoints, successful or not;
        - ``mcp_unauthorized``: the 401s ``/mcp`` answered;
        - ``revoked``: token strings ``/revoke`` killed (the one named and its partner);
        - ``last_authorize``, ``last_token_request``: raw parameters (see ``params_dict``), or
          None; ``last_token_client_auth``: ``basic``, ``post`` or ``none``;
        - ``clients``, ``access_tokens``, ``refresh_tokens``: live state, untouched by reset.
        """
        return {
            "token_requests": dict(self.token_requests),
            "registrations": self.registrations,
            "authorize_requests": self.authorize_requests,
            "revocations": self.revocations,
            "revoked": list(self.revoked),
            "last_authorize": self.last_authorize,
            "last_token_request": self.last_token_request,
            "last_token_client_auth": self.last_token_client_auth,
            "mcp_requests": self.mcp_requests,
            "mcp_unauthorized": self.mcp_unauthorized,
            "clients": len(provider.clients),
            "access_tokens": len(provider.access_tokens),
            "refresh_tokens": len(provider.refresh_tokens),
        }


class MemoryProvider:
    """``OAuthAuthorizationServerProvider`` in memory. The SDK's handlers validate requests
    (client authentication, redirect URI, PKCE, scope subsets, expiry); this class stores,
    issues, rotates and revokes."""

    def __init__(self, stats: Stats, access_ttl: int, token_delay: float, consent_url=None):
        self.stats = stats
        self.access_ttl = access_ttl
        self.token_delay = token_delay
        self.consent_url = consent_url  # None: approve at once
        self.pending: dict[str, tuple[OAuthClientInformationFull, AuthorizationParams]] = {}
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.partner: dict[str, str] = {}  # access <-> refresh issued together
        self.refresh_grace = 0.0  # --refresh-grace
        self.hang_refresh = False  # --hang-refresh
        self.retired: dict[str, tuple[RefreshToken, float]] = {}  # rotated away: (token, when)

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        self.clients[client_info.client_id] = client_info
        log("registered", client_info.client_id, client_info.token_endpoint_auth_method)

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        """Approve at once (the redirect carries ``code`` and ``state``, nothing else), or with
        a consent page, send the browser there to decide."""
        if self.consent_url:
            ticket = secrets.token_urlsafe(16)
            self.pending[ticket] = (client, params)
            return f"{self.consent_url}?ticket={ticket}"
        return self.approve(client, params)

    def approve(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        scopes = params.scopes if params.scopes is not None else (client.scope or "").split()
        code = secrets.token_urlsafe(32)
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=scopes,
            expires_at=time.time() + CODE_TTL,
            client_id=client.client_id or "",
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=SUBJECT,
        )
        log("authorized", client.client_id, "scopes", scopes, "resource", params.resource)
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        return self.codes.get(authorization_code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        # RFC 6749 §4.1.2: a code is used once.
        if self.codes.pop(authorization_code.code, None) is None:
            raise TokenError("invalid_grant", "authorization code was already used")
        return self._issue(
            authorization_code.client_id,
            authorization_code.scopes,
            authorization_code.resource,
            authorization_code.subject,
        )

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        return self.refresh_tokens.get(refresh_token) or self._in_grace(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        """Rotate: new access and refresh tokens; the old refresh token is dead. Requests that
        loaded the same refresh token while this one slept lose with ``invalid_grant``."""
        if self.hang_refresh:
            log("hanging refresh", refresh_token.token)
            await asyncio.Event().wait()  # never set: the client must time out
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self.refresh_tokens.pop(refresh_token.token, None) is None:
            if self._in_grace(refresh_token.token) is None:
                raise TokenError("invalid_grant", "refresh token was already used or revoked")
            log("reused within grace", refresh_token.token)
        elif self.refresh_grace:
            self.retired[refresh_token.token] = (refresh_token, time.monotonic())
        old_access = self.partner.pop(refresh_token.token, None)
        self.partner.pop(old_access or "", None)  # the old access token lives out its ttl
        # RFC 6749 §6: a narrower scope applies to the new access token; the grant keeps its own.
        tokens = self._issue(
            refresh_token.client_id,
            scopes,
            refresh_token.resource,
            refresh_token.subject,
            refresh_scopes=refresh_token.scopes,
        )
        log("rotated", refresh_token.token, "->", tokens.refresh_token)
        return tokens

    def _in_grace(self, token: str) -> RefreshToken | None:
        """With ``--refresh-grace S``, a refresh token rotated less than S seconds ago still
        works (as Okta's grace period and Auth0's reuse interval allow): a client that crashed
        before storing the new one can retry. Each reuse rotates again."""
        retired = self.retired.get(token)
        if retired is None or time.monotonic() - retired[1] > self.refresh_grace:
            return None
        return retired[0]

    async def load_access_token(self, token: str) -> AccessToken | None:
        access = self.access_tokens.get(token)
        if access is None or (access.expires_at is not None and access.expires_at <= time.time()):
            return None
        return access

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        """Revoke the token and the one issued with it (RFC 7009 §2.1 allows both)."""
        for value in (token.token, self.partner.pop(token.token, None)):
            if value is None:
                continue
            self.partner.pop(value, None)
            if self.access_tokens.pop(value, None) or self.refresh_tokens.pop(value, None):
                self.stats.revoked.append(value)
                log("revoked", value)

    def expire_access_tokens(self) -> None:
        past = int(time.time()) - 1
        for access in self.access_tokens.values():
            access.expires_at = past

    def revoke_grants(self) -> None:
        for value in self.refresh_tokens:
            self.partner.pop(value, None)
        self.refresh_tokens.clear()

    def _issue(
        self,
        client_id: str,
        scopes: list[str],
        resource: str | None,
        subject: str | None,
        refresh_scopes: list[str] | None = None,
    ) -> OAuthToken:
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        self.access_tokens[access] = AccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + self.access_ttl,
            resource=resource,
            subject=subject,
        )
        self.refresh_tokens[refresh] = RefreshToken(
            token=refresh,
            client_id=client_id,
            scopes=refresh_scopes or scopes,
            resource=resource,
            subject=subject,
        )
        self.partner[access] = refresh
        self.partner[refresh] = access
        log("issued", access, refresh, "to", client_id, "resource", resource)
        return OAuthToken(
            access_token=access,
            expires_in=self.access_ttl,
            scope=" ".join(scopes),
            refresh_token=refresh,
        )


class Recorder:
    """Count requests per endpoint and keep the raw parameters of the last authorization and
    token requests, then hand the request (body replayed) to the SDK's app."""

    def __init__(self, app: ASGIApp, stats: Stats):
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method, stats = scope["path"], scope["method"], self.stats
        if path == "/mcp":
            stats.mcp_requests += 1
            send = self._watch_unauthorized(send)
        elif path == "/authorize" and method in ("GET", "POST"):
            stats.authorize_requests += 1
            if method == "GET":
                raw = scope["query_string"].decode("latin-1")
            else:
                body, receive = await self._buffer(receive)
                raw = body.decode("latin-1")
            stats.last_authorize = params_dict(parse_qsl(raw, keep_blank_values=True))
        elif path == "/token" and method == "POST":
            body, receive = await self._buffer(receive)
            form = params_dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
            grant = form.get("grant_type", "")
            grant = grant if isinstance(grant, str) else ",".join(grant)
            stats.token_requests[grant] = stats.token_requests.get(grant, 0) + 1
            stats.last_token_request = form
            stats.last_token_client_auth = self._client_auth(scope, form)
            log("token request", form)
        elif path == "/register" and method == "POST":
            stats.registrations += 1
        elif path == "/revoke" and method == "POST":
            stats.revocations += 1
        await self.app(scope, receive, send)

    def _watch_unauthorized(self, send: Send) -> Send:
        async def watching(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.stats.mcp_unauthorized += 1
            await send(message)

        return watching

    @staticmethod
    def _client_auth(scope: Scope, form: dict[str, Any]) -> str:
        headers = dict(scope["headers"])
        if headers.get(b"authorization", b"").lower().startswith(b"basic "):
            return "basic"
        return "post" if "client_secret" in form else "none"

    @staticmethod
    async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
        """Read the whole body; return it and a ``receive`` that plays it back once."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return body, replay


def build_server(base_url: str, provider: MemoryProvider, options) -> MCPServer:
    """The SDK's ``MCPServer`` with the provider, DCR, revocation, the tools and peer routes."""
    auth = AuthSettings(
        issuer_url=base_url,  # a string, so AuthSettings keeps it without a trailing slash
        resource_server_url=base_url + "/mcp",
        validate_token_resource=options.validate_resource,
        required_scopes=REQUIRED_SCOPES,
        client_registration_options=ClientRegistrationOptions(
            enabled=True, valid_scopes=SCOPES, default_scopes=SCOPES
        ),
        revocation_options=RevocationOptions(enabled=True),
    )
    server = MCPServer("oauth-peer", auth_server_provider=provider, auth=auth, log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Return ``text`` unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Return ``a + b``."""
        return a + b

    @server.tool()
    def whoami(ctx: Context) -> dict[str, Any]:
        """Say which client and access token this call came with."""
        user = getattr(ctx.request_context.request, "user", None)
        if not isinstance(user, AuthenticatedUser):
            return {"client_id": None}
        token = user.access_token
        return {
            "client_id": token.client_id,
            "scopes": token.scopes,
            "resource": token.resource,
            "access_token": token.token,
        }

    @server.resource("peer://whoami", mime_type="text/plain")
    def token_of_the_reader() -> str:
        """The SHA-256 of the access token this read came with (a test checks whose
        credential went; the token itself would be scrubbed on its way to the agent)."""
        token = get_access_token()
        return hashlib.sha256(token.token.encode()).hexdigest() if token is not None else ""

    stats = provider.stats

    @server.custom_route("/_peer/stats", methods=["GET"])
    async def peer_stats(request: Request) -> Response:
        return JSONResponse(stats.as_json(provider))

    @server.custom_route("/_peer/reset", methods=["POST"])
    async def peer_reset(request: Request) -> Response:
        fresh = Stats()
        for name in stats.__dataclass_fields__:
            setattr(stats, name, getattr(fresh, name))
        return JSONResponse(stats.as_json(provider))

    @server.custom_route("/_peer/expire", methods=["POST"])
    async def peer_expire(request: Request) -> Response:
        provider.expire_access_tokens()
        return JSONResponse({"expired": len(provider.access_tokens)})

    @server.custom_route("/_peer/revoke-grants", methods=["POST"])
    async def peer_revoke_grants(request: Request) -> Response:
        count = len(provider.refresh_tokens)
        provider.revoke_grants()
        return JSONResponse({"revoked": count})

    if provider.consent_url:
        add_consent_routes(server, provider)
    return server


CONSENT_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Authorize {client}</title></head><body><main>
<h1>Authorize {client}</h1><p>{client} asks for: {scopes}</p>
<form method="post"><input type="hidden" name="ticket" value="{ticket}">
<button name="decision" value="approve">Approve</button>
<button name="decision" value="deny">Deny</button></form></main></body></html>"""


def add_consent_routes(server: MCPServer, provider: MemoryProvider) -> None:
    """``GET /consent?ticket=…`` shows who asks for what; ``POST /consent`` approves (code) or
    denies (``error=access_denied``, RFC 6749 §4.1.2.1), both back to the client's redirect."""

    @server.custom_route("/consent", methods=["GET"])
    async def consent_page(request: Request) -> Response:
        ticket = request.query_params.get("ticket", "")
        if ticket not in provider.pending:
            return HTMLResponse("<p>Unknown or used consent ticket.</p>", status_code=400)
        client, params = provider.pending[ticket]
        name = client.client_name or client.client_id or "a client"
        return HTMLResponse(
            CONSENT_PAGE.format(
                client=html.escape(name),
                scopes=html.escape(" ".join(params.scopes or []) or "(default scopes)"),
                ticket=html.escape(ticket),
            )
        )

    @server.custom_route("/consent", methods=["POST"])
    async def consent_decision(request: Request) -> Response:
        form = await request.form()
        entry = provider.pending.pop(str(form.get("ticket", "")), None)
        if entry is None:
            return HTMLResponse("<p>Unknown or used consent ticket.</p>", status_code=400)
        client, params = entry
        if form.get("decision") == "approve":
            target = provider.approve(client, params)
        else:
            log("denied", client.client_id)
            target = construct_redirect_uri(
                str(params.redirect_uri),
                error="access_denied",
                error_description="The user denied the request.",
                state=params.state,
            )
        return RedirectResponse(target, status_code=303)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--access-ttl", type=int, default=3600, help="access token lifetime (s)")
    parser.add_argument("--token-delay", type=float, default=0, help="sleep in each refresh (s)")
    parser.add_argument("--json-response", action="store_true", help="JSON instead of SSE")
    parser.add_argument(
        "--refresh-grace",
        type=float,
        default=0,
        help="seconds a rotated refresh token still works (default 0: dead at once)",
    )
    parser.add_argument(
        "--hang-refresh", action="store_true", help="never answer a refresh_token request"
    )
    parser.add_argument(
        "--validate-resource",
        action="store_true",
        help="refuse tokens not issued for this /mcp URL (RFC 8707 resource at /authorize)",
    )
    parser.add_argument("--consent", action="store_true", help="show a consent page")
    options = parser.parse_args()

    base_url = f"http://127.0.0.1:{options.port}"
    stats = Stats()
    consent_url = base_url + "/consent" if options.consent else None
    provider = MemoryProvider(stats, options.access_ttl, options.token_delay, consent_url)
    provider.refresh_grace, provider.hang_refresh = options.refresh_grace, options.hang_refresh
    server = build_server(base_url, provider, options)
    hosts = [f"127.0.0.1:{options.port}", f"localhost:{options.port}"]
    app = server.streamable_http_app(
        json_response=options.json_response,
        transport_security=TransportSecuritySettings(
            allowed_hosts=hosts, allowed_origins=[f"http://{host}" for host in hosts]
        ),
    )
    log("serving", base_url + "/mcp", vars(options))
    uvicorn.run(
        Recorder(app, stats),
        host="127.0.0.1",
        port=options.port,
        log_level="info",
        timeout_graceful_shutdown=1,  # open SSE streams must not hold up the stop
    )


if __name__ == "__main__":
    main()
