"""A small pool of SMTP connections (aiosmtplib), and what each failure means.

A connection is opened on first use, reused, reset (RSET) after any failed transaction and
dropped when that reset fails, so one bad message never leaves the next one mid-transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiosmtplib

from shared.settings import Settings


class Outcome:
    """How one send attempt ended."""

    SENT, PERMANENT, TRANSIENT, SERVER = "sent", "permanent", "transient", "server"


@dataclass(frozen=True)
class Attempt:
    """One send's outcome and, when it failed, why."""

    outcome: str
    reason: str = ""


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
    reason = f"{type(exc).__name__}: {exc}"[:2000]
    if _permanent(exc):
        return Attempt(Outcome.PERMANENT, reason)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421:
        return Attempt(Outcome.SERVER, reason)  # service not available, closing channel
    if isinstance(exc, _SERVER_TROUBLE):
        return Attempt(Outcome.SERVER, reason)
    return Attempt(Outcome.TRANSIENT, reason)


NO_SMTPUTF8 = (
    "the address {address!r} needs SMTPUTF8, which the SMTP server does not offer: use a server "
    "that does (Postfix: smtputf8_enable = yes) or ask the participant for an ASCII address"
)


class SmtpConnection:
    """One SMTP connection, opened on first use and reopened after the server drops it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: aiosmtplib.SMTP | None = None

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

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is None or not self._client.is_connected:
            self._client = None
            client = self._new_client()
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()  # extensions (SMTPUTF8, 8BITMIME) are known before MAIL
            self._client = client
        return self._client

    async def send(self, *, sender: str, recipient: str, message: bytes) -> Attempt:
        """Sends one message; never raises, says how it went."""
        for attempt in (1, 2):
            try:
                client = await self._connected()
                utf8 = not (recipient.isascii() and sender.isascii())
                if utf8 and not client.supports_extension("smtputf8"):
                    return Attempt(Outcome.PERMANENT, NO_SMTPUTF8.format(address=recipient))
                options = ["SMTPUTF8"] if utf8 else []
                if not message.isascii() and client.supports_extension("8bitmime"):
                    options.append("BODY=8BITMIME")
                await client.sendmail(sender, [recipient], message, mail_options=options)
                return Attempt(Outcome.SENT)
            except aiosmtplib.SMTPServerDisconnected as exc:
                self._client = None  # a pooled connection the server closed: once more, fresh
                if attempt == 2:
                    return classify(exc)
            except Exception as exc:
                await self._reset(exc)
                return classify(exc)
        raise AssertionError("unreachable")

    async def _reset(self, exc: Exception) -> None:
        """After a failed transaction: RSET, or drop the connection if that fails too."""
        client = self._client
        if client is None or not client.is_connected:
            self._client = None
            return
        if isinstance(exc, (TimeoutError, aiosmtplib.SMTPTimeoutError, OSError)):
            await self.close()  # mid-command: the connection's state is unknown
            return
        try:
            await client.rset()
        except Exception:
            await self.close()

    async def close(self) -> None:
        """Says QUIT if connected (and drops the connection either way)."""
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await asyncio.wait_for(client.quit(), timeout=2)
            except Exception:
                client.close()


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
        """A free connection, for one send."""
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
