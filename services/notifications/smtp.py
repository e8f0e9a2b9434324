"""A small pool of SMTP connections, and what each failure means.

A connection is opened on first use (aiosmtplib), reused, sends a batch of mails pipelined when
the server offers PIPELINING (smtp_pipelined), is reset (RSET) after any failed transaction and
dropped when that reset fails, so one bad message never leaves the next one mid-transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import aiosmtplib

from services.notifications.smtp_pipelined import Extensions, Mail, NeedsSmtpUtf8, Wire, transmit
from shared.settings import Settings


class Outcome:
    """How one send attempt ended."""

    SENT, PERMANENT, TRANSIENT, SERVER = "sent", "permanent", "transient", "server"


@dataclass(frozen=True)
class Attempt:
    """One send's outcome and, when it failed, why."""

    outcome: str
    reason: str = ""


SENT = Attempt(Outcome.SENT)

# 5xx about the server, the connection or our own configuration, not about this message
_NOT_ABOUT_THE_MESSAGE = (
    aiosmtplib.SMTPAuthenticationError,
    aiosmtplib.SMTPConnectResponseError,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPSenderRefused,
)
_SERVER_TROUBLE = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPConnectTimeoutError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    aiosmtplib.SMTPConnectResponseError,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPAuthenticationError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def _permanent(exc: Exception) -> bool:
    """5xx answers about the recipient or the message will not change on retry."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= e.code < 600 for e in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 500 <= exc.code < 600 and not isinstance(exc, _NOT_ABOUT_THE_MESSAGE)
    return False


def classify(exc: Exception) -> Attempt:
    """Permanent (this message never goes), server trouble (the breaker counts it) or transient."""
    if isinstance(exc, NeedsSmtpUtf8):
        return Attempt(Outcome.PERMANENT, str(exc))
    reason = f"{type(exc).__name__}: {exc}"[:2000]
    if _permanent(exc):
        return Attempt(Outcome.PERMANENT, reason)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421:
        return Attempt(Outcome.SERVER, reason)  # service not available, closing channel
    if isinstance(exc, _SERVER_TROUBLE):
        return Attempt(Outcome.SERVER, reason)
    return Attempt(Outcome.TRANSIENT, reason)


class SmtpConnection:
    """One SMTP connection, opened on first use (aiosmtplib: TLS, STARTTLS, AUTH, EHLO), then
    sending through `Wire` (pipelined when the server offers PIPELINING) and reopened after the
    server drops it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._wire: Wire | None = None
        self._server = Extensions()

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host or "127.0.0.1",
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            timeout=s.smtp_timeout_seconds,
        )

    @property
    def is_connected(self) -> bool:
        """Whether a connection is open (it may still turn out closed by the server)."""
        return self._wire is not None and self._wire.is_connected

    @property
    def pipelining(self) -> bool:
        """Whether the server of the open connection offers PIPELINING."""
        return self.is_connected and self._server.pipelining

    async def _connected(self) -> Wire:
        if self._wire is None or not self._wire.is_idle:
            if self._wire is not None:
                self._wire.abort()
            self._wire = None
            client = self._new_client()
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()  # extensions (PIPELINING, SMTPUTF8, 8BITMIME) known first
            self._server = Extensions.of(client)
            self._wire = Wire.take_over(client, self._settings.smtp_timeout_seconds)
        return self._wire

    async def send(self, *, sender: str, recipient: str, message: bytes) -> Attempt:
        """Sends one message; never raises, says how it went."""
        [attempt] = await self.send_many([Mail(sender, recipient, message)])
        assert attempt is not None  # nothing holds a lone mail back
        return attempt

    async def send_many(
        self,
        mails: Sequence[Mail],
        *,
        settled: Callable[[int, Attempt], None] = lambda index, attempt: None,
        may_send: Callable[[int], bool] = lambda index: True,
    ) -> list[Attempt | None]:
        """Sends `mails` in order (pipelined when offered); never raises, says how each went.

        `settled(index, attempt)` hears each outcome the moment it is known (a 250 as it is
        read); `may_send(index)` is asked before each mail goes: a mail it holds back, and all
        after it, are None. A refused mail fails alone (RSET, then the next). When the
        connection fails, the mail whose content is unanswered is SERVER (never SENT without a
        250) and the rest go over a new connection; a connection that cannot be opened makes
        the next mail SERVER, until `may_send` (the breaker) stops it.
        """
        outcomes: list[Attempt | None] = [None] * len(mails)

        def settle(index: int, error: Exception | None) -> None:
            attempt = SENT if error is None else classify(error)
            outcomes[index] = attempt
            settled(index, attempt)

        retry_stale = True  # a pooled connection the server closed: once more, fresh
        while todo := [i for i, outcome in enumerate(outcomes) if outcome is None]:
            if not may_send(todo[0]):
                break
            stale = self._wire is not None and self._wire.is_idle  # reused, if it still works
            try:
                wire = await self._connected()
            except Exception as exc:
                settle(todo[0], exc)
                continue

            def may_send_kth(k: int, todo: list[int] = todo) -> bool:
                return may_send(todo[k])

            def settle_kth(k: int, error: Exception | None, todo: list[int] = todo) -> None:
                settle(todo[k], error)

            count, error = await transmit(
                wire,
                self._server,
                [mails[i] for i in todo],
                may_send=may_send_kth,
                settled=settle_kth,
            )
            if error is None:
                break
            self._wire = None  # transmit dropped it
            closed = isinstance(error, aiosmtplib.SMTPServerDisconnected)
            if count == 0 and not (stale and closed and retry_stale):
                settle(todo[0], error)  # nothing answered: this mail's failure
            retry_stale = False
        return outcomes

    async def close(self) -> None:
        """Says QUIT if connected (and drops the connection either way)."""
        wire, self._wire = self._wire, None
        if wire is not None and wire.is_connected:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await wire.quit()


class SmtpPool:
    """Up to `size` reused connections; a send waits for a free one."""

    def __init__(self, settings: Settings, size: int) -> None:
        self.size = size
        self._all = [SmtpConnection(settings) for _ in range(size)]
        self._free: asyncio.Queue[SmtpConnection] = asyncio.Queue()
        for connection in self._all:
            self._free.put_nowait(connection)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[SmtpConnection]:
        """A free connection, for one send or one share of a batch."""
        connection = await self._free.get()
        try:
            yield connection
        finally:
            self._free.put_nowait(connection)

    async def send(self, *, sender: str, recipient: str, message: bytes) -> Attempt:
        """Sends over the next free connection."""
        async with self.connection() as connection:
            return await connection.send(sender=sender, recipient=recipient, message=message)

    async def close(self) -> None:
        """Closes every connection."""
        await asyncio.gather(*(c.close() for c in self._all), return_exceptions=True)
