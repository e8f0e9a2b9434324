"""Signed, expiring links: what a participant clicks in an email, checked where it points.

notifications builds the links (accept or decline a proposed pair, "we met", a check-in form, an
ICS feed); pairing and scheduling answer them over HTTP. Both sides share one secret
(MENTORSHIP_LINK_SECRET). The token says what it is for (`purpose`), what it is about (`data`) and
until when it holds; expiry is checked against the injectable clock, not the wall clock, so tests
and replays see the same answer.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from shared.settings import Settings


class LinkInvalid(ValueError):
    """The link was altered, signed with another secret, or is for another purpose."""


class LinkExpired(ValueError):
    """The link was genuine but is no longer valid."""


class LinkSigner:
    """Signs and checks link tokens for one secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 32:
            raise ValueError(
                "the link secret must be at least 32 characters; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        self._serializer = URLSafeSerializer(secret, salt="mentorship-link")

    def sign(self, purpose: str, data: dict[str, Any], expires_at: dt.datetime) -> str:
        """A URL-safe token for `purpose` about `data`, valid until `expires_at`."""
        payload = {"p": purpose, "d": data, "x": int(expires_at.timestamp())}
        token: str = self._serializer.dumps(payload)
        return token

    def verify(self, token: str, purpose: str, now: dt.datetime) -> dict[str, Any]:
        """The data a token carries; LinkInvalid or LinkExpired when it must not be honoured."""
        try:
            payload = self._serializer.loads(token)
        except BadSignature as exc:
            raise LinkInvalid("this link is not valid; use the newest email you received") from exc
        if not isinstance(payload, dict) or payload.get("p") != purpose:
            raise LinkInvalid("this link is for something else; use the newest email you received")
        if now.timestamp() >= payload["x"]:
            raise LinkExpired("this link has expired; ask your program coordinator for a new one")
        data: dict[str, Any] = payload["d"]
        return data


def link_signer(settings: Settings) -> LinkSigner:
    """The signer every service of one deployment shares.

    MENTORSHIP_LINK_SECRET when set (required when services run on different machines);
    otherwise a secret generated once and kept in the data directory (`link-secret`, mode 0600),
    which is what the embedded runner and the tests use.
    """
    if settings.link_secret is not None:
        return LinkSigner(settings.link_secret.get_secret_value())
    path = settings.data_dir / "link-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(32))
    except FileExistsError:
        pass
    return LinkSigner(path.read_text().strip())


@dataclass(frozen=True)
class LinkKind:
    """One kind of link: who answers it (service and path) and what its token is for."""

    purpose: str
    service: str
    path: str


# The contract between the service that mails a link and the one that answers it. The answering
# service serves GET `path?t=<token>` as a page whose button POSTs the answer (mail scanners
# prefetch GET links; a GET must never change anything).
PAIR_RESPONSE = LinkKind("pair.respond", "pairing", "/links/pair-response")
"""data: program_id, proposal_id, participant_id; the page offers accept and decline."""
SESSION_HELD = LinkKind("session.held", "scheduling", "/links/session-held")
"""data: program_id, session_id, participant_id; "we met", with attendance and takeaways."""
CHECKIN_REPORT = LinkKind("checkin.report", "scheduling", "/links/checkin-report")
"""data: program_id, checkin_id, participant_id; the check-in report form."""
RELATIONSHIP = LinkKind("pair.relationship", "pairing", "/links/relationship")
"""data: program_id, pair_id, participant_id; the pair's charter, goals, milestones, offers."""


def link_url(
    settings: Settings,
    signer: LinkSigner,
    kind: LinkKind,
    data: dict[str, Any],
    expires_at: dt.datetime,
) -> str:
    """The absolute URL a participant clicks for `kind` about `data`."""
    token = signer.sign(kind.purpose, data, expires_at)
    return f"{settings.public_url_for(kind.service)}{kind.path}?t={token}"
