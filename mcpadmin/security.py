"""Browser-facing defences: security headers on every response, and a refusal of state-changing
requests sent from another site (on top of Flask-WTF's CSRF token).

Headers (set unless the view set them itself):

- ``Content-Security-Policy``: scripts and styles from this origin only (htmx is vendored;
  no inline script or style), no plugins, no ``<base>``, not framable. ``form-action`` allows
  this origin and https (plus loopback http in development): every Connect button is a form
  whose answer is a 302 to the authorization server, and browsers apply ``form-action`` to
  that redirect too, so ``'self'`` alone would break Connect.
- ``Referrer-Policy: same-origin``: the OAuth callback URL carries the authorization code, so
  no other site ever gets a Referer. (Not ``no-referrer``: with it Chromium sends
  ``Origin: null`` on the app's own form posts, which the cross-site check must refuse.)
- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (older browsers).
- ``Cache-Control: no-store`` on everything but static files: pages show credential state.

Requests whose ``Host`` is not the host and port of ``PUBLIC_BASE_URL`` (or one of
``EXTRA_HOSTS``: ``allowed_host``) are answered 400 before any view runs, with a page naming
the address to use: a DNS-rebinding page names its own host, and another service on this
machine its own port. A server whose public URL is on loopback takes its other loopback names
(``localhost`` for ``127.0.0.1``) as its own: the admin pages redirect there, so its session
cookie and OAuth callbacks stay on one origin. Static files answer any Host (the refusal page
is styled with them; they hold nothing a rebinding page could use). Behind
``TRUSTED_PROXY_HOPS`` reverse proxies, the client address and scheme come from the
``X-Forwarded-For`` / ``X-Forwarded-Proto`` entries those proxies added, and from nowhere else.
"""

import functools
from urllib.parse import urlsplit

from flask import current_app, redirect, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import setting
from .errors import render_error
from .protocol.urls import host_and_port

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# CSP host sources cannot name an IPv6 literal (Chromium ignores ``http://[::1]:*``).
HEALTH_PATH = "/healthz"
LOOPBACK_SOURCES = "http://127.0.0.1:* http://localhost:*"
# The port a Host without one means, by PUBLIC_BASE_URL's scheme [RFC 9110 §4.2.1, §4.2.2].
DEFAULT_PORTS = {"http": 80, "https": 443}
# The names of this machine: one host to a server whose public URL names one of them (browsers
# resolve ``localhost`` themselves, so no rebinding page can send it).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def content_security_policy(allow_http_loopback: bool = False) -> str:
    """The CSP header value; loopback http form targets only in development mode."""
    form_action = "'self' https:" + (f" {LOOPBACK_SOURCES}" if allow_http_loopback else "")
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "frame-ancestors": "'none'",
        "form-action": form_action,
        "base-uri": "'none'",
        "object-src": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``, lower-cased, default ports dropped; None if
    ``url`` has no scheme or host (``Origin: null`` included)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return None
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def allowed_origins(public_base_url: str, extra_hosts: list[str]) -> set[str]:
    """The origins a form of this app is sent from: ``PUBLIC_BASE_URL``'s, and each extra host
    (``host`` or ``host:port``) under the same scheme. Never derived from the request."""
    scheme = urlsplit(public_base_url).scheme
    origins = {origin_of(public_base_url)} | {origin_of(f"{scheme}://{h}") for h in extra_hosts}
    return origins - {None}


def allowed_host(host_header: str | None, public_base_url: str, extra_hosts: list[str]) -> bool:
    """Whether a request's ``Host`` header names this app: the host and port of
    ``public_base_url``, or one of ``extra_hosts`` (``host`` or ``host:port``). A port left
    out, in the header or in an extra host, is the default port of ``public_base_url``'s
    scheme (80 for http, 443 for https), as an ``Origin`` is read (``allowed_origins``).
    Hosts compare without regard to case or a trailing dot; IPv6 literals in brackets. A
    missing or malformed header is refused."""
    return host_kind(host_header, public_base_url, extra_hosts) is not None


def host_kind(host_header: str | None, public_base_url: str, extra_hosts: list[str]):
    """``"served"`` for a ``Host`` that is ``public_base_url``'s or an extra host's,
    ``"loopback"`` for another loopback name of a loopback public URL on the same port
    (``localhost:5000`` for ``http://127.0.0.1:5000``), else None."""
    if not host_header:
        return None
    default_port, served, aliases = _allowed_addresses(public_base_url, tuple(extra_hosts))
    address = host_and_port(host_header, default_port)
    if address in served:
        return "served"
    return "loopback" if address in aliases else None


@functools.lru_cache(maxsize=16)
def _allowed_addresses(public_base_url: str, extra_hosts: tuple[str, ...]) -> tuple:
    """The default port of ``public_base_url``'s scheme, the (host, port) pairs served, and
    the loopback names of a loopback public URL (same port) that are not among them."""
    parts = urlsplit(public_base_url)
    default_port = DEFAULT_PORTS.get(parts.scheme.lower())
    public = host_and_port(parts.netloc.rpartition("@")[2], default_port)
    addresses = {public} | {host_and_port(host, default_port) for host in extra_hosts}
    aliases = set()
    if public is not None and public[0] in LOOPBACK_HOSTS:
        aliases = {(name, public[1]) for name in LOOPBACK_HOSTS} - addresses
    return default_port, frozenset(addresses - {None}), frozenset(aliases)


def bearer_token() -> str | None:
    """The token of the request's ``Authorization: Bearer <token>`` header; ``/metrics``
    reads its token so."""
    return bearer_of(request.headers.get("Authorization"))


def bearer_of(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (the scheme in any case, RFC
    7235 §2.1); None for another scheme, an empty token or none. The agent endpoint reads
    its keys so."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def foreign_host_refusal():
    """Refuse (400, a page of its own naming the address to use and the settings that add
    one) a request whose ``Host`` is not ``allowed_host``; send a GET for another loopback
    name of a loopback server to the same path at ``PUBLIC_BASE_URL``. ``/healthz`` answers
    whatever the Host (load balancers and orchestrators probe it by address, and it tells
    nothing), and so do static files."""
    config = current_app.config
    public = config["PUBLIC_BASE_URL"]
    host = request.headers.get("Host")
    if request.path == HEALTH_PATH or request.endpoint == "static":
        return None
    kind = host_kind(host, public, config["EXTRA_HOSTS"])
    if kind == "served":
        return None
    if kind == "loopback" and request.method in ("GET", "HEAD"):
        return redirect(public + request.full_path.removesuffix("?"))
    current_app.logger.warning("refused a request for host %r", host)
    page = render_template(
        "errors/bad_host.html",
        host=str(host or "")[:100],
        public=public,
        extra_hosts=setting("EXTRA_HOSTS"),
        public_base_url=setting("PUBLIC_BASE_URL"),
    )
    return page, 400


def cross_site_refusal():
    """Refuse (403) a state-changing request a browser says came from another site.

    ``Origin`` must be one of ``allowed_origins`` (compared with the configuration, not with
    the request's own Host); ``Sec-Fetch-Site: cross-site`` is refused too. Requests without
    either header (curl, the test client) are left to the CSRF token check.
    """
    if request.method not in UNSAFE_METHODS:
        return None
    origin = request.headers.get("Origin")
    allowed = allowed_origins(
        current_app.config["PUBLIC_BASE_URL"], current_app.config["EXTRA_HOSTS"]
    )
    foreign_origin = origin is not None and origin_of(origin) not in allowed
    if foreign_origin or request.headers.get("Sec-Fetch-Site") == "cross-site":
        current_app.logger.warning(
            "refused a cross-site %s to %s (Origin %r)", request.method, request.path, origin
        )
        return render_error(
            403,
            "Request from another site refused",
            "This form was sent from another web site, so it was not accepted. Open "
            "mcpadmin directly and try again.",
        )
    return None


def add_headers(response):
    headers = response.headers
    loopback = current_app.config["ALLOW_HTTP_LOOPBACK"]
    headers.setdefault("Content-Security-Policy", content_security_policy(loopback))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    if request.endpoint != "static" and "Cache-Control" not in headers:
        headers["Cache-Control"] = "no-store"
    return response


def init_app(app):
    """Install the hooks (first, so they run before the login guard) and the proxy fix."""
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    app.before_request(foreign_host_refusal)
    app.before_request(cross_site_refusal)
    app.after_request(add_headers)
