"""Coordinators' bearer tokens: random, shown once, stored as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "mtk_"


def new_token() -> str:
    """A fresh token with 256 bits of randomness."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_configured(value: str) -> dict[str, str]:
    """'program-a=token1,program-b=token2' -> {token: program}; raises ValueError if malformed."""
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        program, sep, token = item.partition("=")
        if not sep or not program.strip() or not token.strip():
            raise ValueError(
                "MENTORSHIP_INSIGHTS_API_TOKENS must look like 'program-a=token1,program-b=token2'"
            )
        found[token.strip()] = program.strip()
    return found


def token_digest(token: str) -> str:
    """What is stored: a token this random needs no slow hash, only no plain copy."""
    return hashlib.sha256(token.encode()).hexdigest()
