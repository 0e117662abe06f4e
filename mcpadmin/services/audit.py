"""The admin audit trail (stub: the audit work fills this in; callers use this name)."""


def record(action: str, target=None, details: dict | None = None, admin_name: str | None = None):
    """Add one ``AuditEvent`` to the session (the caller commits): ``action`` such as
    "connector.updated", ``target`` the connector, agent or key it concerns, ``details`` what
    changed (never a secret)."""
