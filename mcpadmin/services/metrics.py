"""Prometheus metrics (stub: the metrics work fills this in; callers use these names)."""


def observe_call(agent: str, connector: str | None, outcome: str, seconds: float):
    """One agent tool call ended with ``outcome`` (``calllog.Outcome``) after ``seconds``."""


def observe_refresh(outcome: str):
    """One OAuth token refresh ended: "ok", "dead_grant" or "failed"."""


def observe_sync(outcome: str):
    """One tool sync ended: "ok" or "failed"."""
