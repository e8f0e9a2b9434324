"""Coordinators' bearer tokens: random, shown once, stored as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "mtk_"


def new_token() -> str:
    """A fresh token with 256 bits of randomness."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What is stored: a token this random needs no slow hash, only no plain copy."""
    return hashlib.sha256(token.encode()).hexdigest()
