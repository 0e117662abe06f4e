"""Secrets at rest: a MultiFernet keyring and the one column type every secret is stored with.

A column of type ``EncryptedText`` only accepts a ``Sealed`` value (ciphertext), so plaintext
can never be written by accident; reading it gives a ``Sealed`` back, and plaintext appears only
where code calls ``reveal()``. The first configured key encrypts; every key decrypts.
"""

import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from sqlalchemy.types import Text, TypeDecorator

from .config import ConfigError, setting

EXTENSION = "mcpadmin.keyring"


class UnreadableSecret(Exception):
    """No configured key decrypts this value (a lost or retired key, or corrupted ciphertext)."""


def init_app(app):
    """Build the keyring from ``ENCRYPTION_KEYS``.

    :raise config.ConfigError: no key, or a key that is not a url-safe base64 32-byte Fernet key.
    """
    keys = app.config["ENCRYPTION_KEYS"]
    if not keys:
        raise ConfigError(f"{setting('ENCRYPTION_KEYS')} is empty: at least one Fernet key "
                          "is needed.")  # fmt: skip
    try:
        fernets = [Fernet(k) for k in keys]
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{setting('ENCRYPTION_KEYS')} holds a value that is not a Fernet key (generate "
            "one with: .venv/bin/python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        ) from exc
    app.extensions[EXTENSION] = MultiFernet(fernets)


def keyring() -> MultiFernet:
    return current_app.extensions[EXTENSION]


class Sealed:
    """A secret as stored: ciphertext only. ``str()``/``repr()`` never show the plaintext."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str):
        self.ciphertext = ciphertext

    def reveal(self) -> str:
        """The plaintext.

        :raise UnreadableSecret: no configured key decrypts it.
        """
        try:
            return keyring().decrypt(self.ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise UnreadableSecret("stored credential cannot be decrypted") from exc

    def readable(self) -> bool:
        try:
            self.reveal()
        except UnreadableSecret:
            return False
        return True

    def rotated(self) -> "Sealed":
        """The same secret encrypted under the first key.

        :raise UnreadableSecret: no configured key decrypts it.
        """
        try:
            return Sealed(keyring().rotate(self.ciphertext.encode("ascii")).decode("ascii"))
        except (InvalidToken, UnicodeError) as exc:
            raise UnreadableSecret("stored credential cannot be decrypted") from exc

    def __eq__(self, other):
        return isinstance(other, Sealed) and other.ciphertext == self.ciphertext

    def __hash__(self):
        return hash(self.ciphertext)

    def __repr__(self):
        return "<Sealed secret>"

    __str__ = __repr__


def token_digest(token: str) -> str:
    """How a random token handed out once (a session cookie, an invite link, an OIDC state,
    an agent session id) is kept: its SHA-256, in hex. Enough for a 256-bit random token: a
    database copy gives nothing to present."""
    return hashlib.sha256(token.encode()).hexdigest()


def seal(plaintext: str) -> Sealed:
    """Encrypt ``plaintext`` under the first key."""
    return Sealed(keyring().encrypt(plaintext.encode("utf-8")).decode("ascii"))


def secret_state(value: Sealed | None) -> str:
    """``"missing"``, ``"set"`` or ``"unreadable"``: what a page may say about a stored secret."""
    if value is None:
        return "missing"
    return "set" if value.readable() else "unreadable"


class EncryptedText(TypeDecorator):
    """Stores a ``Sealed`` value's ciphertext; refuses anything else."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Sealed):
            raise TypeError("encrypted columns take seal(plaintext), never plaintext")
        return value.ciphertext

    def process_result_value(self, value, dialect):
        return None if value is None else Sealed(value)
