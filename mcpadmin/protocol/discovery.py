"""Finding a server's authorization server: RFC 9728 protected resource metadata, then
RFC 8414 / OpenID Connect authorization server metadata, in the order MCP gives.

The URL builders are pure and return the ordered list to try; ``discover`` fetches them through
the HTTP client, stops at the first that answers, and logs every attempt for the operator.
"""

import re
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit, urlunsplit

from .endpoints import ENDPOINTS, InsecureEndpoint, check_endpoint
from .errors import OAuthError
from .http import BadResponse, Http, HttpError
from .versions import MODERN_VERSION

_AUTH_PARAM = re.compile(r'([A-Za-z0-9_.\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


class DiscoveryError(OAuthError):
    """No usable OAuth metadata; ``str()`` is the operator's message, ``log`` what was tried."""

    def __init__(self, message: str, log: list[dict]):
        super().__init__("invalid_metadata", message)
        self.log = log


@dataclass
class Discovery:
    """What a Connect needs to know about the server's authorization server."""

    resource: str
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    scopes_supported: list[str] = field(default_factory=list)
    code_challenge_methods_supported: list[str] = field(default_factory=list)
    token_endpoint_auth_methods_supported: list[str] = field(default_factory=list)
    client_id_metadata_document_supported: bool = False
    authorization_response_iss_parameter_supported: bool = False
    # From the protected resource: the scope its 401 challenge named, and its scopes_supported.
    challenge_scope: str | None = None
    resource_scopes: list[str] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)

    def as_metadata(self) -> dict:
        """The JSON stored on the connector (the log is stored on its own)."""
        data = asdict(self)
        data.pop("log")
        return data


def parse_www_authenticate(header: str | None) -> dict:
    """The parameters of the ``Bearer`` challenge in a ``WWW-Authenticate`` value (RFC 6750
    §3), lower-cased names, unquoted values; ``{}`` when there is no Bearer challenge."""
    if not header:
        return {}
    match = re.search(r"(?:^|,)\s*Bearer\b", header, re.IGNORECASE)
    if not match:
        return {}
    params = {}
    for name, value in _AUTH_PARAM.findall(header[match.end() :]):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(name.lower(), value)
    return params


def canonical_resource(url: str) -> str:
    """The canonical server URI sent as ``resource`` (RFC 8707): lower-case scheme and host,
    no fragment, no trailing slash (MCP authorization, canonical server URI)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def protected_resource_urls(server_url: str, resource_metadata: str | None = None) -> list[str]:
    """Where to look for protected resource metadata, in order: the challenge's
    ``resource_metadata``, then the well-known URL with the server's path inserted, then the
    well-known URL at the root (RFC 9728 §3.1; MCP authorization server discovery)."""
    parts = urlsplit(server_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    urls = [resource_metadata] if resource_metadata else []
    if path:
        urls.append(f"{origin}/.well-known/oauth-protected-resource{path}")
    urls.append(f"{origin}/.well-known/oauth-protected-resource")
    return list(dict.fromkeys(urls))


def authorization_server_urls(issuer: str) -> list[str]:
    """Where to look for the issuer's metadata, in MCP's order: RFC 8414 §3.1 then OpenID
    Connect Discovery, path inserted after the well-known segment, OIDC also appended."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if not path:
        return [
            f"{origin}/.well-known/oauth-authorization-server",
            f"{origin}/.well-known/openid-configuration",
        ]
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}/.well-known/openid-configuration{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    ]


def resource_matches(resource: str, server_url: str) -> bool:
    """Whether metadata naming ``resource`` may describe ``server_url`` (RFC 9728 §3.3): the
    same origin, and the resource's path equal to or a parent of the server's path."""
    have, want = urlsplit(canonical_resource(resource)), urlsplit(canonical_resource(server_url))
    if (have.scheme, have.netloc) != (want.scheme, want.netloc):
        return False
    prefix = have.path.rstrip("/")
    return want.path == prefix or want.path.startswith(prefix + "/")


def discover(http: Http, server_url: str, allow_http_loopback: bool = False) -> Discovery:
    """Probe the server, then find and validate its authorization server's metadata.

    :raise DiscoveryError: nothing usable was found (every attempt is in its ``log``).
    """
    log = []
    challenge = _probe(http, server_url, log)
    resource_doc = _first_document(
        http, protected_resource_urls(server_url, challenge.get("resource_metadata")), log,
        lambda doc: _check_resource(doc, server_url),
    )  # fmt: skip
    if resource_doc is not None:
        issuer = resource_doc["authorization_servers"][0]
    else:
        parts = urlsplit(server_url)
        issuer = f"{parts.scheme}://{parts.netloc}"
    metadata = _first_document(
        http, authorization_server_urls(issuer), log,
        lambda doc: _check_server(doc, issuer, allow_http_loopback),
    )  # fmt: skip
    if metadata is None:
        _raise_refusal(log)
        raise DiscoveryError(
            "This server does not advertise OAuth: no authorization server metadata was found. "
            "Choose bearer token or API key, or enter the OAuth endpoints by hand.",
            log,
        )
    return Discovery(
        resource=canonical_resource(server_url),
        issuer=metadata["issuer"],
        authorization_endpoint=metadata["authorization_endpoint"],
        token_endpoint=metadata["token_endpoint"],
        registration_endpoint=metadata.get("registration_endpoint"),
        revocation_endpoint=metadata.get("revocation_endpoint"),
        scopes_supported=strings(metadata.get("scopes_supported")),
        code_challenge_methods_supported=strings(metadata.get("code_challenge_methods_supported")),
        token_endpoint_auth_methods_supported=strings(
            metadata.get("token_endpoint_auth_methods_supported")
        ),
        client_id_metadata_document_supported=(
            metadata.get("client_id_metadata_document_supported") is True
        ),
        authorization_response_iss_parameter_supported=(
            metadata.get("authorization_response_iss_parameter_supported") is True
        ),
        challenge_scope=challenge.get("scope") or None,
        resource_scopes=strings((resource_doc or {}).get("scopes_supported")),
        log=log,
    )


def _raise_refusal(log):
    """Name the first document discovery refused, if any: the server may well use OAuth, and
    entering endpoints by hand would skip the check that refused it.

    :raise DiscoveryError: a resource or authorization server metadata document was refused.
    """
    for step, what in (("resource metadata", "protected resource metadata"),
                       ("server metadata", "authorization server's metadata")):  # fmt: skip
        refused = [e for e in log if e["step"] == step and e.get("refused")]
        if refused:
            raise DiscoveryError(
                f"The {what} at {refused[0]['url']} was refused: {refused[0]['outcome']}. "
                "The connector page lists every URL tried.",
                log,
            )


def _probe(http, server_url, log) -> dict:
    """POST a request without credentials; return the Bearer challenge of a 401, if any."""
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN_VERSION,
        "Mcp-Method": "server/discover",
    }
    body = {"jsonrpc": "2.0", "id": "mcpadmin-probe", "method": "server/discover",
            "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
                                 "io.modelcontextprotocol/clientCapabilities": {}}}}  # fmt: skip
    try:
        with http.open("POST", server_url, headers=headers, json=body) as response:
            status, header = response.status, response.headers.get("WWW-Authenticate")
    except HttpError as exc:
        log.append({"step": "probe", "url": server_url, "outcome": str(exc)})
        return {}
    challenge = parse_www_authenticate(header) if status == 401 else {}
    if status != 401:
        outcome = f"{status}: did not ask for credentials"
    elif challenge.get("resource_metadata"):
        outcome = "401: names its resource metadata"
    else:
        outcome = "401 without resource_metadata"
    log.append({"step": "probe", "url": server_url, "outcome": outcome})
    return challenge


def _first_document(http, urls, log, check):
    """The first URL answering 200 with a JSON object that ``check`` accepts (``check``
    returns a reason to reject, or None); every attempt is logged."""
    step = "resource metadata" if "protected-resource" in urls[-1] else "server metadata"
    for url in urls:
        try:
            response = http.get(url, headers={"Accept": "application/json"}, redirects=2)
            if response.status != 200:
                log.append({"step": step, "url": url, "outcome": f"{response.status}"})
                continue
            doc = response.json()
        except BadResponse as exc:
            log.append({"step": step, "url": url, "outcome": str(exc), "refused": True})
            continue
        except HttpError as exc:
            log.append({"step": step, "url": url, "outcome": str(exc)})
            continue
        problem = "not a JSON object" if not isinstance(doc, dict) else check(doc)
        if problem is None:
            log.append({"step": step, "url": url, "outcome": "found"})
            return doc
        log.append({"step": step, "url": url, "outcome": problem, "refused": True})
    return None


def _check_resource(doc, server_url):
    servers = doc.get("authorization_servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], str):
        return "names no authorization server"
    resource = doc.get("resource")
    if not isinstance(resource, str) or not resource_matches(resource, server_url):
        return f"describes another resource ({str(resource)[:200]!r})"
    return None


def _check_server(doc, issuer, allow_http_loopback):
    if doc.get("issuer") != issuer:  # RFC 8414 §3.3: identical, or the metadata is not used
        return f"issuer {str(doc.get('issuer'))[:200]!r} is not {issuer!r}"
    for name in ("authorization_endpoint", "token_endpoint"):
        if not doc.get(name):
            return f"has no {name}"
    for name in ENDPOINTS:
        if doc.get(name) is not None:
            try:
                check_endpoint(doc[name], allow_http_loopback)
            except InsecureEndpoint as exc:
                return f"{name} refused: {exc}"
    return None


def strings(value) -> list[str]:
    """The strings of a metadata list (anything else in it, or a value that is no list: none)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
