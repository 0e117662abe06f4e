"""The one error base of the OAuth protocol family (discovery, registration, tokens)."""


class OAuthError(Exception):
    """An OAuth step failed. ``error`` is the OAuth error code (RFC 6749 §5.2, RFC 7591
    §3.2.2) or one of ours (``unavailable``, ``invalid_metadata``); ``description`` is the
    sentence for the operator, and ``str()``."""

    def __init__(self, error: str, description: str = ""):
        super().__init__(description or error)
        self.error = error
        self.description = description
