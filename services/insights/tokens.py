"""Coordinators' bearer tokens: random, shown once, stored as a SHA-256 digest, scoped to one
program, with an optional expiry; configured ones must be long enough to resist guessing."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "mtk_"
MIN_CONFIGURED_LENGTH = 32


class TokenConfigError(ValueError):
    """MENTORSHIP_INSIGHTS_API_TOKENS cannot be used as it is; the message says what to fix."""


def new_token() -> str:
    """A fresh token with 256 bits of randomness."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_configured(value: str) -> dict[str, str]:
    """'program-a=token1,program-b=token2' -> {token: program}.

    Raises TokenConfigError for a malformed item, a token shorter than MIN_CONFIGURED_LENGTH,
    or one token listed for two programs (it would silently open one program to the other).
    """
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        program, sep, token = (part.strip() for part in item.partition("="))
        if not sep or not program or not token:
            raise TokenConfigError(
                "MENTORSHIP_INSIGHTS_API_TOKENS must look like 'program-a=token1,program-b=token2'"
            )
        if len(token) < MIN_CONFIGURED_LENGTH:
            raise TokenConfigError(
                f"the token configured for program {program!r} has {len(token)} characters; "
                f"use at least {MIN_CONFIGURED_LENGTH} random ones (`python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`) or create one with `mentorship token create`"
            )
        if found.get(token, program) != program:
            raise TokenConfigError(
                f"one token is listed in MENTORSHIP_INSIGHTS_API_TOKENS for programs "
                f"{found[token]!r} and {program!r}; a token is scoped to one program: give each "
                "program its own"
            )
        found[token] = program
    return found


def token_digest(token: str) -> str:
    """What is stored: a token this random needs no slow hash, only no plain copy."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(digest: str) -> str:
    """The public name of a token (to list and revoke it by): its digest's first 12 digits."""
    return digest[:12]


@dataclass(frozen=True)
class Grant:
    """What a stored token allows, as the API checks it."""

    program_id: str
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def refusal(self, now: dt.datetime) -> str | None:
        """Why the token is refused now, or None if it is valid."""
        if self.revoked_at is not None:
            return "this token was revoked; ask for a new one (`mentorship token create`)"
        if self.expires_at is not None and self.expires_at <= now:
            return (
                f"this token expired at {self.expires_at.isoformat()}; ask for a new one "
                "(`mentorship token create --expires-in-days N`)"
            )
        return None
