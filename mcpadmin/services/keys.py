"""Key rotation: re-encrypt every stored secret under the first configured key. Caller commits."""

from dataclasses import dataclass

from sqlalchemy import select

from ..crypto import EncryptedText, UnreadableSecret
from ..extensions import db


@dataclass
class Rotation:
    rotated: int = 0
    unreadable: int = 0


def encrypted_columns():
    """``(model, [attribute names])`` for every mapped class with encrypted columns."""
    for mapper in db.Model.registry.mappers:
        names = [c.key for c in mapper.columns if isinstance(c.type, EncryptedText)]
        if names:
            yield mapper.class_, names


def rotate_all() -> Rotation:
    """Re-encrypt each readable secret; count (and leave untouched) the unreadable ones."""
    result = Rotation()
    for model, names in encrypted_columns():
        for row in db.session.scalars(select(model)):
            for name in names:
                sealed = getattr(row, name)
                if sealed is None:
                    continue
                try:
                    setattr(row, name, sealed.rotated())
                except UnreadableSecret:
                    result.unreadable += 1
                else:
                    result.rotated += 1
    return result
