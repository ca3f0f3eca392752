"""Password hashing with argon2id (RFC 9106), the memory-hard winner of the Password Hashing
Competition, through ``argon2-cffi``'s defaults (64 MiB, 3 passes: ~50 ms per check here).

A hash that was made with weaker parameters than the current defaults is re-hashed at the next
successful login (:func:`needs_rehash`), so raising the cost later upgrades users as they log in.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "check_password_policy",
    "hash_password",
    "needs_rehash",
    "use_parameters",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 10
"""Shortest password accepted; length beats composition rules (NIST SP 800-63B)."""

_STATE: dict[str, object] = {"hasher": PasswordHasher()}
_STATE["dummy"] = PasswordHasher().hash("safewatch timing equaliser")
"""The hasher in use, and ``dummy``: a hash verified against when the user does not exist, so a
wrong name costs as long as a wrong password and response times do not reveal user names."""


def use_parameters(*, time_cost: int, memory_cost: int, parallelism: int = 1) -> None:
    """Change the argon2id cost for new hashes (memory in KiB).

    For tests, which hash dozens of passwords on a shared 2-core machine; a server keeps the
    library's defaults. Existing hashes keep verifying (their parameters are in the hash).
    """
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    _STATE["hasher"] = hasher
    _STATE["dummy"] = hasher.hash("safewatch timing equaliser")


def _hasher() -> PasswordHasher:
    hasher = _STATE["hasher"]
    assert isinstance(hasher, PasswordHasher)
    return hasher


def check_password_policy(password: str) -> str:
    """Return ``password`` if the policy accepts it, else raise ``ValueError`` saying why.

    The API's request bodies validate with this function (a pydantic ``AfterValidator``), so a
    password the store would refuse is a 422 with this message, never a 500 from the store's
    ``ValueError``; "whitespace" is Python's ``str.strip``, which no ``pattern`` can mirror.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise ValueError("a password cannot be only whitespace")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, salt included) of ``password``."""
    return _hasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; ``None`` burns the same time and fails."""
    try:
        return _hasher().verify(stored_hash or str(_STATE["dummy"]), password) and (
            stored_hash is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether the hash was made with other parameters than the current ones."""
    try:
        return _hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
