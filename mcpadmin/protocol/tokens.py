"""Token endpoint requests (RFC 6749 §4.1.3 and §6) and revocation (RFC 7009)."""

import base64
import math
from dataclasses import dataclass
from urllib.parse import quote

from .errors import OAuthError
from .http import Blocked, Http, HttpError

# The longest lifetime believed from ``expires_in`` (RFC 6749 §5.1 sets no bound): a year.
# A token that outlives it is refreshed early; one claiming 10**12 seconds cannot overflow a date.
MAX_EXPIRES_IN = 365 * 24 * 3600


class TokenError(OAuthError):
    """A token request failed. ``error`` is the OAuth error code, or ``"unavailable"`` for a
    timeout, an unreachable server or a 5xx (worth retrying later)."""

    @property
    def transient(self) -> bool:
        return self.error in ("unavailable", "temporarily_unavailable", "server_error")


@dataclass
class ClientAuth:
    """How to authenticate as the client at the token endpoint."""

    client_id: str
    client_secret: str | None = None
    method: str = "none"

    def apply(self, form: dict, headers: dict):
        # client_id always travels in the form: public clients must send it (RFC 6749
        # §4.1.3) and some servers want it even beside Basic credentials.
        form["client_id"] = self.client_id
        if self.method == "client_secret_post" and self.client_secret:
            form["client_secret"] = self.client_secret
        elif self.method == "client_secret_basic" and self.client_secret:
            pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()


@dataclass
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_in: int | None
    scope: str | None
    # OpenID Connect's ID token (Core §3.1.3.3), when the scope asked for ``openid``.
    id_token: str | None = None


def exchange_code(http: Http, endpoint: str, client: ClientAuth, *, code: str, verifier: str,
                  redirect_uri: str, resource: str | None) -> Tokens:  # fmt: skip
    """Redeem an authorization code with its PKCE verifier (RFC 7636 §4.5) and the resource
    (RFC 8707 §2.2; None for a sign-in, which asks for no resource).

    :raise TokenError:
    """
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier}  # fmt: skip
    if resource is not None:
        form["resource"] = resource
    return _token_request(http, endpoint, client, form)


def refresh(http: Http, endpoint: str, client: ClientAuth, *, refresh_token: str,
            resource: str) -> Tokens:  # fmt: skip
    """Trade a refresh token for new tokens (RFC 6749 §6).

    :raise TokenError: ``invalid_grant`` when the refresh token is dead.
    """
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": resource}
    return _token_request(http, endpoint, client, form)


def revoke(http: Http, endpoint: str, client: ClientAuth, token: str, hint: str):
    """Ask the server to revoke ``token`` (RFC 7009 §2.1); 200 means done, even for a token
    the server did not know.

    :raise TokenError: the server refused or did not answer.
    """
    form, headers = {"token": token, "token_type_hint": hint}, {}
    client.apply(form, headers)
    try:
        response = http.post(endpoint, data=form, headers=headers)
    except Blocked as exc:
        raise TokenError("invalid_response", f"Revocation redirected: {exc}") from None
    except HttpError as exc:
        raise TokenError("unavailable", f"Revocation failed: {exc}") from None
    if response.status != 200:
        raise TokenError(*_error(response))


def _token_request(http, endpoint, client, form) -> Tokens:
    headers = {"Accept": "application/json"}
    client.apply(form, headers)
    try:
        response = http.post(endpoint, data=form, headers=headers)
    except Blocked as exc:  # e.g. a 307 elsewhere: the code and secret are never re-sent
        raise TokenError(
            "invalid_response", f"The token endpoint redirected; not followed: {exc}"
        ) from None
    except HttpError as exc:
        raise TokenError("unavailable", f"The token endpoint did not answer: {exc}") from None
    if response.status >= 500:
        raise TokenError("unavailable", f"The token endpoint failed ({response.status}).")
    if response.status != 200:
        raise TokenError(*_error(response))
    try:
        body = response.json()
    except HttpError:
        raise TokenError("invalid_response", "The token endpoint answered with non-JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise TokenError("invalid_response", "The token answer has no access_token.")
    if str(body.get("token_type", "Bearer")).lower() != "bearer":
        raise TokenError("invalid_response", "The token answer is not a Bearer token.")
    expires_in = body.get("expires_in")
    refresh_token = body.get("refresh_token")
    scope = body.get("scope")
    id_token = body.get("id_token")
    return Tokens(
        access_token=body["access_token"],
        refresh_token=refresh_token if isinstance(refresh_token, str) else None,
        expires_in=_seconds(expires_in),
        scope=scope if isinstance(scope, str) else None,
        id_token=id_token if isinstance(id_token, str) else None,
    )


def _seconds(value) -> int | None:
    """``expires_in`` as whole seconds, cut to ``±MAX_EXPIRES_IN`` so that an expiry date
    can always be computed from it; None for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return max(-MAX_EXPIRES_IN, min(int(value), MAX_EXPIRES_IN))


def _error(response) -> tuple[str, str]:
    """``(error, description)`` from an RFC 6749 §5.2 error answer, however malformed."""
    try:
        body = response.json()
    except HttpError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        described = body.get("error_description")
        text = f"{body['error']}: {described}" if isinstance(described, str) else body["error"]
        return body["error"], f"The authorization server answered {text[:300]}"
    return f"http_{response.status}", f"The authorization server answered {response.status}."
