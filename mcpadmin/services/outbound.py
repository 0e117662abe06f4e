"""The outbound HTTP client configured from the app: every service builds its client here."""

from flask import current_app

from ..protocol.http import Http


def http(timeout: float | None = None, deadline: float | None = None) -> Http:
    """A client with the configured timeout, size limit and address policy.

    :param timeout: a shorter per-call timeout for callers bound by a lock.
    :param deadline: the whole exchange's limit (default: three timeouts).
    """
    config = current_app.config
    return Http(
        timeout=min(timeout or config["HTTP_TIMEOUT"], config["HTTP_TIMEOUT"]),
        max_bytes=config["HTTP_MAX_BYTES"],
        allow_private=config["ALLOW_PRIVATE_NETWORKS"],
        deadline=deadline,
    )
