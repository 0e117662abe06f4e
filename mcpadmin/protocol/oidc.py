"""OpenID Connect sign-in, the relying party's side: the authorization code flow (Core 1.0
§3.1) with PKCE (RFC 7636), the provider's metadata (Discovery 1.0), and the checks of the ID
token (Core §3.1.3.7), signatures and claims checked by joserfc.

Pure except ``discover``, ``signing_keys`` and ``userinfo``, which fetch through the HTTP
client they are given. Failures raise ``OidcError`` whose description is a sentence for the
person signing in or the owner setting it up.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet

from .discovery import strings
from .endpoints import InsecureEndpoint, check_endpoint
from .errors import OAuthError
from .http import Http, HttpError

# Discovery §4: the metadata lives at the issuer plus this path.
WELL_KNOWN = "/.well-known/openid-configuration"
# ID token signatures accepted: asymmetric ones only (an HMAC one would be keyed with the
# client secret, and "none" is no signature).
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                      "ES512", "EdDSA", "Ed25519")  # fmt: skip
# Seconds of clock difference tolerated between the provider and this server (exp, iat).
LEEWAY = 60
# Client authentication at the token endpoint, in order of preference; Discovery §3 makes
# client_secret_basic the default when the provider lists none.
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class OidcError(OAuthError):
    """A sign-in step failed; ``error`` says which kind (an OAuth error code or one of ours:
    ``invalid_metadata``, ``invalid_id_token``, ``unavailable``), ``description`` (and
    ``str()``) is the sentence to show."""


@dataclass(frozen=True)
class ProviderMetadata:
    """What a sign-in needs from the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()
    id_token_signing_alg_values_supported: tuple[str, ...] = ("RS256",)
    authorization_response_iss_parameter_supported: bool = False

    def client_auth_method(self) -> str:
        """client_secret_basic unless the provider offers only client_secret_post.

        :raise OidcError: it offers neither.
        """
        offered = self.token_endpoint_auth_methods_supported or ("client_secret_basic",)
        for method in CLIENT_AUTH_METHODS:
            if method in offered:
                return method
        raise OidcError(
            "invalid_metadata",
            f"The provider {self.issuer} accepts no client secret at its token endpoint "
            f"(it offers {', '.join(offered)[:200]}); mcpadmin signs in with a client secret.",
        )

    def algorithms(self) -> list[str]:
        """The ID token algorithms both sides accept."""
        offered = self.id_token_signing_alg_values_supported or ("RS256",)
        return [alg for alg in SIGNING_ALGORITHMS if alg in offered]


def check_issuer(issuer: str, allow_http_loopback: bool = False) -> str:
    """``issuer`` if it may be a provider's issuer URL: https (http only for a loopback host
    in development), no query or fragment (Discovery §2, ``issuer``).

    :raise OidcError: with the reason.
    """
    try:
        check_endpoint(issuer, allow_http_loopback)
    except InsecureEndpoint as exc:
        sentence = str(exc).replace("The endpoint", "The issuer URL", 1)
        raise OidcError("invalid_issuer", sentence) from None
    parts = urlsplit(issuer)
    if parts.query or parts.fragment or issuer.endswith(("?", "#")):
        raise OidcError("invalid_issuer", f"The issuer URL {issuer[:200]!r} has a query or a "
                                          "fragment; an issuer URL has neither.")  # fmt: skip
    return issuer


def discovery_url(issuer: str) -> str:
    """Where the issuer's metadata is: the issuer, without a trailing slash, plus
    ``/.well-known/openid-configuration`` (Discovery §4)."""
    return issuer.rstrip("/") + WELL_KNOWN


def parse_metadata(doc, issuer: str, allow_http_loopback: bool = False) -> ProviderMetadata:
    """The metadata ``doc`` gives, if it describes ``issuer`` exactly (Discovery §4.3: the
    ``issuer`` value MUST be identical to the URL the metadata was asked for) and every
    endpoint may be used.

    :raise OidcError: with what is wrong.
    """
    if not isinstance(doc, Mapping):
        raise OidcError("invalid_metadata", f"{discovery_url(issuer)} is not a JSON object.")
    if doc.get("issuer") != issuer:
        raise OidcError(
            "invalid_metadata",
            f"The provider's metadata names the issuer {str(doc.get('issuer'))[:200]!r}, not "
            f"{issuer!r}. Enter the issuer URL exactly as the provider spells it.",
        )
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        value = doc.get(name)
        if value is None and name == "userinfo_endpoint":
            continue
        try:
            check_endpoint(value, allow_http_loopback)
        except InsecureEndpoint as exc:
            raise OidcError("invalid_metadata", f"The provider's {name}: {exc}") from None
    if "code" not in _strings(doc.get("response_types_supported"), ["code"]):
        raise OidcError("invalid_metadata", f"{issuer} does not offer the authorization code flow.")
    if "S256" not in _strings(doc.get("code_challenge_methods_supported"), ["S256"]):
        raise OidcError("invalid_metadata", f"{issuer} does not offer PKCE with S256.")
    metadata = ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=doc["authorization_endpoint"],
        token_endpoint=doc["token_endpoint"],
        jwks_uri=doc["jwks_uri"],
        userinfo_endpoint=doc.get("userinfo_endpoint"),
        token_endpoint_auth_methods_supported=tuple(
            _strings(doc.get("token_endpoint_auth_methods_supported"), [])
        ),
        id_token_signing_alg_values_supported=tuple(
            _strings(doc.get("id_token_signing_alg_values_supported"), ["RS256"])
        ),
        authorization_response_iss_parameter_supported=(
            doc.get("authorization_response_iss_parameter_supported") is True
        ),
    )
    if not metadata.algorithms():
        raise OidcError(
            "invalid_metadata",
            f"The provider {issuer} signs ID tokens only with "
            f"{', '.join(metadata.id_token_signing_alg_values_supported)[:200]}, which mcpadmin "
            "does not accept (it needs a public-key signature such as RS256).",
        )
    metadata.client_auth_method()
    return metadata


def discover(http: Http, issuer: str, allow_http_loopback: bool = False) -> ProviderMetadata:
    """Fetch and check the issuer's metadata.

    :raise OidcError: a bad issuer URL, no answer, not JSON, or metadata ``parse_metadata``
        refuses.
    """
    check_issuer(issuer, allow_http_loopback)
    url = discovery_url(issuer)
    doc = _get_json(http, url, "The provider's metadata")
    return parse_metadata(doc, issuer, allow_http_loopback)


def signing_keys(http: Http, metadata: ProviderMetadata) -> KeySet:
    """The provider's published keys (``jwks_uri``).

    :raise OidcError: no answer, or no usable key in it.
    """
    doc = _get_json(http, metadata.jwks_uri, "The provider's signing keys")
    try:
        return KeySet.import_key_set(doc)
    except (JoseError, KeyError, TypeError, ValueError):
        raise OidcError("invalid_metadata", f"{metadata.jwks_uri} holds no signing key "
                                            "mcpadmin can use.") from None  # fmt: skip


def authorization_url(metadata: ProviderMetadata, *, client_id: str, redirect_uri: str,
                      scope: str, state: str, nonce: str, code_challenge: str) -> str:  # fmt: skip
    """Where to send the browser to sign in (Core §3.1.2.1, PKCE S256: RFC 7636 §4.3)."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    endpoint = metadata.authorization_endpoint
    return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)


def check_response_issuer(iss: str | None, metadata: ProviderMetadata):
    """RFC 9207 §2.4: an ``iss`` in the answer must be the issuer; without one, refused when
    the provider says it always sends it.

    :raise OidcError: the answer came from, or claims to come from, elsewhere.
    """
    if iss is not None and iss != metadata.issuer:
        raise OidcError(
            "invalid_issuer",
            "The sign-in answer came from another provider than the one asked (issuer "
            "mismatch); it was refused.",
        )
    if iss is None and metadata.authorization_response_iss_parameter_supported:
        raise OidcError(
            "invalid_issuer",
            "The sign-in answer did not name its provider (no iss) although the provider "
            "promised to; it was refused.",
        )


def validate_id_token(id_token: str, keys: KeySet, metadata: ProviderMetadata, *,
                      client_id: str, nonce: str, now: int | None = None) -> dict:  # fmt: skip
    """The ID token's claims, once its signature (with ``keys``) and claims check out
    (Core §3.1.3.7): ``iss`` the issuer, ``aud`` holding the client ID and, with other
    audiences, ``azp`` the client ID, ``exp`` in the future, ``iat`` not in the future,
    ``sub`` present, ``nonce`` this sign-in's (§3.1.2.1: it binds the token to the session,
    so another sign-in's token is refused).

    :raise OidcError: ``invalid_id_token``, with what was wrong.
    """
    issuer = metadata.issuer
    try:
        token = jwt.decode(id_token, keys, algorithms=metadata.algorithms())
    except BadSignatureError:
        raise _bad(f"its signature does not match {issuer}'s keys (it was altered, or not "
                   "issued by that provider)") from None  # fmt: skip
    except UnsupportedAlgorithmError:
        raise _bad("it is signed with an algorithm mcpadmin does not accept") from None
    except InvalidKeyIdError:
        raise _bad(f"it is signed with a key {issuer} does not publish") from None
    except (JoseError, ValueError, TypeError):
        raise _bad("it is not a signed JWT") from None
    claims = token.claims
    registry = jwt.JWTClaimsRegistry(
        now=now,
        leeway=LEEWAY,
        iss={"essential": True, "value": issuer},
        sub={"essential": True},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise _bad("it has expired (sign in again; if this keeps happening, check this "
                   "server's clock)") from None  # fmt: skip
    except MissingClaimError as exc:
        raise _bad(f"it lacks the {exc.claim} claim") from None
    except InvalidClaimError as exc:
        raise _bad(_CLAIM_PROBLEMS.get(exc.claim, f"its {exc.claim} claim is wrong").format(
            issuer=issuer, iss=str(claims.get("iss"))[:200], aud=str(claims.get("aud"))[:200]
        )) from None  # fmt: skip
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        # Core §3.1.3.7 items 3-5: several audiences need an azp naming this client.
        raise _bad("it is meant for several applications and does not name this one as the "
                   "party it was issued to (azp)")  # fmt: skip
    if "azp" in claims and claims["azp"] != client_id:
        raise _bad("it was issued to another application (azp)")
    return claims


_CLAIM_PROBLEMS = {
    "iss": "it was issued by {iss}, not by {issuer}",
    "aud": "it was issued for another application (audience {aud}), not for this client ID",
    "nonce": "it belongs to another sign-in (its nonce does not match: a replayed token)",
    "iat": "it was issued in the future (check this server's clock)",
    "exp": "its expiry time is not a date",
    "sub": "its subject is not a string",
}


def userinfo(http: Http, metadata: ProviderMetadata, access_token: str, subject: str) -> dict:
    """The userinfo claims (Core §5.3), for claims the ID token does not carry; ``{}`` when
    the provider has no userinfo endpoint.

    :raise OidcError: no answer, or claims about another subject (§5.3.2: refused).
    """
    if not metadata.userinfo_endpoint:
        return {}
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    try:
        response = http.get(metadata.userinfo_endpoint, headers=headers)
        claims = response.json() if response.status == 200 else None
    except HttpError as exc:
        raise OidcError("unavailable", f"The provider's userinfo did not answer: {exc}") from None
    if not isinstance(claims, dict):
        raise OidcError("unavailable", "The provider's userinfo answered without claims.")
    if claims.get("sub") != subject:
        raise OidcError("invalid_userinfo", "The provider's userinfo describes someone else; "
                                            "it was refused.")  # fmt: skip
    return claims


def _bad(problem: str) -> OidcError:
    return OidcError("invalid_id_token", f"The provider's ID token was refused: {problem}.")


def _get_json(http: Http, url: str, what: str):
    try:
        response = http.get(url, headers={"Accept": "application/json"}, redirects=2)
    except HttpError as exc:
        raise OidcError("unavailable", f"{what} could not be read: {exc}") from None
    if response.status != 200:
        raise OidcError("unavailable", f"{what} could not be read: {url} answered "
                                       f"{response.status}.")  # fmt: skip
    try:
        return response.json()
    except HttpError as exc:
        raise OidcError("invalid_metadata", f"{what} could not be read: {exc}") from None


def _strings(value, default: list[str]) -> list[str]:
    """A metadata list of strings; ``default`` when absent (Discovery §3 defaults)."""
    return default if value is None else strings(value)
