"""Orchestration callable from views, the CLI and tests alike: no request context here."""

from sqlalchemy import func, select

from ..extensions import db


def name_taken(model, name: str, exclude_id: int | None = None) -> bool:
    """Whether another row of ``model`` already has this name (case-insensitively)."""
    query = select(model.id).where(func.lower(model.name) == name.lower())
    if exclude_id is not None:
        query = query.where(model.id != exclude_id)
    return db.session.scalar(query) is not None
