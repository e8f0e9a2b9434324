"""Calendar replies from an IMAP mailbox: the organizer's folder is polled, each iMIP REPLY in it
becomes session.responded per attendee, exactly once.

Once per MENTORSHIP_REPLIES_IMAP_POLL_SECONDS the poller connects (TLS, STARTTLS or plain),
selects the folder and reads the mail it has not looked at yet, oldest first, without marking it
read (BODY.PEEK). What it looked at is marked with the keyword ``$MentorshipRead`` (servers
that allow keywords: a person reading the mailbox does not hide a reply from the poller), or,
where the server allows no keywords, only replies are marked \\Seen and only unread mail is read.

- A calendar reply is recorded in one transaction (replies.record_replies: only answers from the
  attendee's own address, for a UID this service invited), then marked \\Seen. The event's id
  comes from the reply's Message-ID, and a reply whose event is already in the outbox emits
  nothing: a reply recorded but not yet marked when the process died is read again after the
  restart and publishes nothing twice. Two replicas polling one mailbox are kept apart the same
  way (the outbox's event id is unique).
- Mail that is no calendar reply is left where it is, unread (moved to
  MENTORSHIP_REPLIES_IMAP_OTHER_MAILBOX when that is set), and counted.
- A reply that cannot be read (a broken calendar, an unparseable mail) is logged once, counted
  and kept in the mailbox, unread, for a person to look at.
- The database away: the mail stays unmarked and is read again at the next poll.
- The server away or refusing the login: one log line when that starts (saying what to check),
  one when it ends; polling goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING

from sqlalchemy import select

from services.notifications.replies import MAX_MESSAGE_BYTES, parse_replies, record_replies
from shared.settings import Settings
from shared.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from shared.service import Running

log = logging.getLogger("mentorship.notifications.imap")

KEYWORD = "$MentorshipRead"
BATCH = 100  # messages read per poll at most; the rest at the next one (sooner: see poll_once)
FAILURES_BEFORE_GIVING_UP = 5  # a reply whose recording keeps failing while others succeed

_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class ImapError(Exception):
    """The mailbox cannot be read now; the message says what to check."""


@dataclass
class ImapCounts:
    """What the poller did since it started."""

    polls: int = 0
    replies: int = 0  # calendar replies read (recorded, or recognised as already recorded)
    responded: int = 0  # session.responded events emitted
    other: int = 0  # mail that is no calendar reply (left alone or moved)
    malformed: int = 0  # replies that cannot be read (kept, logged once)
    retried: int = 0  # replies whose recording failed (database away): read again later


@dataclass
class _Mailbox:
    """State of the folder as this process knows it: everything up to `done` is dealt with."""

    uidvalidity: int = -1
    done: int = 0
    failures: dict[int, int] = field(default_factory=dict)


def classify(raw: bytes) -> str:
    """'reply' (an iMIP REPLY with answers), 'malformed' (a calendar reply that cannot be
    read), or 'other'."""
    try:
        _, _, answers = parse_replies(raw)
    except Exception:  # any mail at all may arrive here: nothing in it may stop the poller
        return "malformed" if b"REPLY" in raw.upper() and b"VCALENDAR" in raw.upper() else "other"
    if answers:
        return "reply"
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        for part in message.walk():
            if part.get_content_type() not in ("text/calendar", "application/ics"):
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and re.search(rb"(?im)^METHOD:\s*REPLY\s*$", payload):
                return "malformed"  # says it is a reply, but no answer could be read from it
    except Exception:
        return "malformed"
    return "other"


def _port(s: Settings) -> int:
    if s.replies_imap_port:
        return s.replies_imap_port
    return 993 if s.replies_imap_security == "tls" else 143


def _text(data: object) -> str:
    if isinstance(data, list):
        return " ".join(_text(d) for d in data)
    if isinstance(data, tuple):
        return " ".join(_text(d) for d in data)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return "" if data is None else str(data)


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Connection:
    """One logged-in imaplib connection with the folder selected (blocking: run in a thread)."""

    def __init__(self, s: Settings) -> None:
        self.settings = s
        host = s.replies_imap_host or ""
        port = _port(s)
        where = f"{host}:{port}"
        timeout = s.replies_imap_timeout_seconds
        try:
            if s.replies_imap_security == "tls":
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=ssl.create_default_context(), timeout=timeout
                )
            else:
                self.imap = imaplib.IMAP4(host, port, timeout=timeout)
                if s.replies_imap_security == "starttls":
                    self.imap.starttls(ssl.create_default_context())
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ImapError(
                f"cannot reach the IMAP server {where} ({exc}): check MENTORSHIP_REPLIES_IMAP_HOST"
                ", _PORT and _SECURITY (tls for 993, starttls or none for 143)"
            ) from exc
        user = s.replies_imap_username or ""
        password = s.replies_imap_password.get_secret_value() if s.replies_imap_password else ""
        try:
            self.imap.login(user, password)
        except imaplib.IMAP4.error as exc:
            self.close()
            raise ImapError(
                f"the IMAP server {where} refused the login of {user!r} ({exc}): check "
                "MENTORSHIP_REPLIES_IMAP_USERNAME and MENTORSHIP_REPLIES_IMAP_PASSWORD"
            ) from exc
        status, data = self.imap.select(_quote(s.replies_imap_mailbox))
        if status != "OK":
            self.close()
            raise ImapError(
                f"the IMAP folder {s.replies_imap_mailbox!r} on {where} cannot be selected "
                f"({_text(data)}): check MENTORSHIP_REPLIES_IMAP_MAILBOX"
            )
        _, validity = self.imap.response("UIDVALIDITY")
        self.uidvalidity = int(_text(validity).split()[0]) if validity and validity[0] else 0
        _, flags = self.imap.response("PERMANENTFLAGS")
        self.keywords = "\\*" in _text(flags)
        _, listed = self.imap.capability()  # as offered after the login
        capabilities = {c.upper() for c in _text(listed).split()}
        self.can_move = "MOVE" in capabilities
        self.uidplus = "UIDPLUS" in capabilities
        self._created_other = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.imap.logout()

    def _ok(self, what: str, result: tuple[str, list[object]]) -> list[object]:
        status, data = result
        if status != "OK":
            raise ImapError(f"IMAP {what} failed ({_text(data)}); retried at the next poll")
        return data

    def unread(self, after: int) -> list[int]:
        """UIDs above `after` this poller has not dealt with, oldest first."""
        criteria = f"UNKEYWORD {KEYWORD}" if self.keywords else "UNSEEN"
        data = self._ok("SEARCH", self.imap.uid("SEARCH", f"UID {after + 1}:*", criteria))
        uids = sorted({int(u) for u in _text(data).split() if u.isdigit()})
        return [u for u in uids if u > after]  # "n:*" always matches the highest UID

    def fetch(self, uid: int) -> bytes | None:
        """The message's bytes (not marking it read); None when gone or too big to be a reply."""
        data = self._ok("FETCH", self.imap.uid("FETCH", str(uid), "(RFC822.SIZE)"))
        size = _SIZE.search(_text(data).encode())
        if size is None:
            return None  # expunged meanwhile
        if int(size.group(1)) > MAX_MESSAGE_BYTES:
            return b""
        data = self._ok("FETCH", self.imap.uid("FETCH", str(uid), "(UID BODY.PEEK[])"))
        for item in data:
            if isinstance(item, tuple) and _UID.search(item[0]) and isinstance(item[1], bytes):
                return item[1]
        return None

    def mark(self, uid: int, *, seen: bool) -> None:
        flags = [*(["\\Seen"] if seen else []), *([KEYWORD] if self.keywords else [])]
        if flags:
            self._ok("STORE", self.imap.uid("STORE", str(uid), "+FLAGS", f"({' '.join(flags)})"))

    def move_other(self, uid: int) -> None:
        target = self.settings.replies_imap_other_mailbox
        assert target
        if not self._created_other:
            self.imap.create(_quote(target))  # NO when it exists already: fine
            self._created_other = True
        if self.can_move:
            self._ok("MOVE", self.imap.uid("MOVE", str(uid), _quote(target)))
            return
        self._ok("COPY", self.imap.uid("COPY", str(uid), _quote(target)))
        self._ok("STORE", self.imap.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)"))
        if self.uidplus:
            self._ok("EXPUNGE", self.imap.uid("EXPUNGE", str(uid)))


class ImapPoller:
    """Polls the organizer's IMAP folder for calendar replies (see the module's doc)."""

    def __init__(
        self,
        settings: Settings,
        unit_of_work: Callable[[], contextlib.AbstractAsyncContextManager[UnitOfWork]],
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._unit_of_work = unit_of_work
        self._on_commit = on_commit
        self.counts = ImapCounts()
        self._mailbox = _Mailbox()
        self._problem: str | None = None
        self._database_away = False

    def check(self) -> str | None:
        """A readiness problem (/readyz), or None."""
        return self._problem

    def _state(self, problem: str | None) -> None:
        if problem and problem != self._problem:
            log.warning("calendar replies not read from IMAP: %s", problem)
        elif problem is None and self._problem is not None:
            log.info("calendar replies read from IMAP again")
        self._problem = problem

    async def poll_once(self) -> bool:
        """One poll; True when mail is left for another poll at once (more than one batch)."""
        self.counts.polls += 1
        try:
            conn = await asyncio.to_thread(_Connection, self.settings)
        except ImapError as exc:
            self._state(str(exc))
            return False
        try:
            more = await self._read(conn)
        except (ImapError, OSError, imaplib.IMAP4.error) as exc:
            self._state(f"{exc}" if isinstance(exc, ImapError) else f"connection lost ({exc})")
            return False
        finally:
            await asyncio.to_thread(conn.close)
        self._state(None)
        return more

    async def _read(self, conn: _Connection) -> bool:
        box = self._mailbox
        if conn.uidvalidity != box.uidvalidity:  # a new folder (or the first poll): from the top
            self._mailbox = box = _Mailbox(uidvalidity=conn.uidvalidity)
        uids = await asyncio.to_thread(conn.unread, box.done)
        failed: list[int] = []
        for uid in uids[:BATCH]:
            if not await self._one(conn, uid):
                failed.append(uid)
        # everything up to the first failed UID is dealt with; from there it is read again
        last = uids[:BATCH][-1] if uids else box.done
        box.done = max(box.done, (min(failed) - 1) if failed else last)
        return len(uids) > BATCH

    async def _one(self, conn: _Connection, uid: int) -> bool:
        """Deals with one message; False when it must be read again at the next poll."""
        raw = await asyncio.to_thread(conn.fetch, uid)
        if raw is None:
            return True  # expunged meanwhile
        kind = classify(raw) if raw else "other"
        if kind == "other":
            self.counts.other += 1
            if self.settings.replies_imap_other_mailbox:
                await asyncio.to_thread(conn.move_other, uid)
            else:
                await asyncio.to_thread(conn.mark, uid, seen=False)
            return True
        if kind == "malformed":
            self._malformed(uid, "its calendar cannot be read")
            await asyncio.to_thread(conn.mark, uid, seen=False)
            return True
        try:
            async with self._unit_of_work() as uow:
                emitted = await record_replies(raw, uow)
        except Exception as exc:
            if await self._database_reachable():  # this reply itself fails: not for ever
                box = self._mailbox
                box.failures[uid] = box.failures.get(uid, 0) + 1
                if box.failures[uid] >= FAILURES_BEFORE_GIVING_UP:
                    self._malformed(uid, f"recording it failed {box.failures[uid]} times ({exc!r})")
                    await asyncio.to_thread(conn.mark, uid, seen=False)
                    return True
            elif not self._database_away:
                log.warning(
                    "calendar replies not recorded yet (%r): the database is unreachable; "
                    "they stay unmarked in the mailbox and are read again at the next poll",
                    exc,
                )
                self._database_away = True
            self.counts.retried += 1
            return False
        if self._database_away:
            log.info("calendar replies recorded again")
            self._database_away = False
        self._mailbox.failures.pop(uid, None)
        self.counts.replies += 1
        self.counts.responded += emitted
        if emitted:
            self._on_commit()
        await asyncio.to_thread(conn.mark, uid, seen=True)
        return True

    async def _database_reachable(self) -> bool:
        try:
            async with self._unit_of_work() as uow:
                await uow.session.execute(select(1))
        except Exception:
            return False
        return True

    def _malformed(self, uid: int, why: str) -> None:
        self.counts.malformed += 1
        log.warning(
            "calendar reply UID %d in %r kept unread: %s; answer the attendee by hand",
            uid,
            self.settings.replies_imap_mailbox,
            why,
        )

    async def run(self) -> None:
        """Polls until cancelled."""
        s = self.settings
        log.info(
            "reading calendar replies from IMAP %s:%d folder %r every %g s",
            s.replies_imap_host,
            _port(s),
            s.replies_imap_mailbox,
            s.replies_imap_poll_seconds,
        )
        while True:
            more = await self.poll_once()
            if not more:
                await asyncio.sleep(s.replies_imap_poll_seconds)


async def run_imap_poller(running: Running) -> None:
    """Polls the organizer's IMAP folder when MENTORSHIP_REPLIES_IMAP_HOST is set."""
    if not running.settings.replies_imap_host:
        await asyncio.Event().wait()
        return
    poller = ImapPoller(running.settings, running.unit_of_work, on_commit=running.relay.wake)
    running.checks.append(poller.check)
    await poller.run()
