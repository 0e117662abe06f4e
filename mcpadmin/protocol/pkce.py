"""PKCE (RFC 7636) with the S256 method, the only one MCP clients use."""

import base64
import hashlib
import secrets


def make_verifier() -> str:
    """A fresh ``code_verifier``: 86 characters from the unreserved set (§4.1 asks 43–128)."""
    return secrets.token_urlsafe(64)


def challenge(verifier: str) -> str:
    """``BASE64URL(SHA256(ASCII(code_verifier)))`` without padding (§4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
