"""Staff passwords: argon2id hashes (argon2-cffi's defaults, RFC 9106's second recommendation), checked
in constant time; a hash made with older parameters is replaced at the next good login."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

MIN_LENGTH = 10
MAX_LENGTH = 1024   # longer input is refused before hashing (argon2 would take it, but nobody types it)


class WeakPassword(ValueError):
    """A password ticketd will not store (the message says why)."""


def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()


def check_new(password: str, username: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"too short: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"too long: at most {MAX_LENGTH} characters")
    if password.strip().lower() in (username.lower(), "password", "0123456789", "1234567890"):
        raise WeakPassword("too easy to guess")


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def verify(stored: str, password: str) -> bool:
    """Whether ``password`` matches the hash ``stored`` ("" never matches)."""
    if not stored or len(password) > MAX_LENGTH:
        return False
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return bool(_hasher().check_needs_rehash(stored))
