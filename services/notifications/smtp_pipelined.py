"""SMTP transactions written ahead of their answers (RFC 2920 PIPELINING), over a connection
aiosmtplib opened (connect, STARTTLS or TLS, AUTH, EHLO); see ADR 0014.

With PIPELINING a mail's content and final dot go out in one write with the next mail's MAIL
FROM, RCPT TO and DATA, and the four answers come back together: one round trip a mail, not
four. aiosmtplib reads one answer per command and drops answers that arrive together, so once
a connection is ready its transport is handed to `Wire`, which keeps every answer in order.
Without PIPELINING the same transactions go one command at a time.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

MAX_ANSWER = 32 * 1024  # one answer, continuation lines included (aiosmtplib's bound too)


class NeedsSmtpUtf8(ValueError):
    """The address is not ASCII and the server does not offer SMTPUTF8."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"the address {address!r} needs SMTPUTF8, which the SMTP server does not offer: use a "
            "server that does (Postfix: smtputf8_enable = yes) or ask the participant for an "
            "ASCII address"
        )


@dataclass(frozen=True)
class Mail:
    """One message for one recipient."""

    sender: str
    recipient: str
    message: bytes


@dataclass(frozen=True)
class Extensions:
    """What the server's EHLO offered, of what sending needs."""

    pipelining: bool = False
    smtputf8: bool = False
    eightbitmime: bool = False
    size: bool = False

    @classmethod
    def of(cls, client: aiosmtplib.SMTP) -> Extensions:
        """The extensions a connected client's server offers."""
        offers = client.supports_extension
        return cls(offers("pipelining"), offers("smtputf8"), offers("8bitmime"), offers("size"))


class Wire(asyncio.Protocol):
    """A connected transport taken over from aiosmtplib: writes go out as they are, and every
    answer the server sends is kept, in order, until read (also those that arrived before the
    connection was lost)."""

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self._transport = transport
        self.timeout = timeout  # seconds an answer may take
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._answers: collections.deque[aiosmtplib.SMTPResponse] = collections.deque()
        self._arrived = asyncio.Event()
        self._lost: Exception | None = None
        transport.set_protocol(self)

    @classmethod
    def take_over(cls, client: aiosmtplib.SMTP, timeout: float) -> Wire:
        """The connection of a client that is connected, greeted and past EHLO (and AUTH); the
        client must not be used afterwards."""
        transport = client.transport
        if not isinstance(transport, asyncio.Transport):
            raise aiosmtplib.SMTPServerDisconnected("the SMTP connection closed while opening")
        return cls(transport, timeout)

    @property
    def is_connected(self) -> bool:
        """Whether writing can still reach the server."""
        return self._lost is None and not self._transport.is_closing()

    @property
    def is_idle(self) -> bool:
        """Connected, and nothing arrived that no command asked for (a 421 before closing)."""
        return self.is_connected and not self._answers and not self._lines and not self._buffer

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) != -1:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            try:
                code = int(line[:3])
            except ValueError:
                text = line[:80].decode("utf-8", "replace")
                self._fail(aiosmtplib.SMTPResponseException(-1, f"malformed SMTP answer {text!r}"))
                return
            self._lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":
                self._answers.append(aiosmtplib.SMTPResponse(code, "\n".join(self._lines)))
                self._lines = []
        if len(self._buffer) + sum(map(len, self._lines)) > MAX_ANSWER:
            self._fail(aiosmtplib.SMTPResponseException(-1, "SMTP answer too long"))
        self._arrived.set()

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("the SMTP server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
        lost.__cause__ = exc
        self._fail(lost)

    def _fail(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        self._transport.abort()
        self._arrived.set()

    def write(self, data: bytes) -> None:
        """Sends bytes (buffered by the transport; nothing here waits)."""
        if not self.is_connected:
            raise self._lost or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport.write(data)

    async def answer(self) -> aiosmtplib.SMTPResponse:
        """The next answer; raises once none is left and the connection is gone, or after
        `timeout` seconds without one."""
        while not self._answers:
            if self._lost is not None:
                raise self._lost
            self._arrived.clear()
            try:
                async with asyncio.timeout(self.timeout):
                    await self._arrived.wait()
            except TimeoutError as exc:
                raise aiosmtplib.SMTPReadTimeoutError("no SMTP answer in time") from exc
        return self._answers.popleft()

    def abort(self) -> None:
        """Drops the connection at once (its state is unknown)."""
        self._fail(aiosmtplib.SMTPServerDisconnected("the connection was dropped"))

    async def quit(self) -> None:
        """Says QUIT and closes the connection."""
        try:
            self.write(b"QUIT\r\n")
            await self.answer()
        finally:
            self.abort()


@functools.lru_cache(maxsize=4096)
def _quoted(address: str, encoding: str) -> bytes:
    """<address> for MAIL FROM or RCPT TO (raises ValueError for one that cannot be written)."""
    return quote_address(address).encode(encoding)


def _content(message: bytes) -> tuple[int, bytes]:
    """The size SIZE counts and the content as DATA carries it: CRLF line ends, a leading dot
    doubled, the final dot (aiosmtplib's rules; a message already so is not rewritten)."""
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = normalize_message_line_endings(message)
    elif not message.endswith(b"\r\n"):
        message += b"\r\n"
    size = len(message)
    if message.startswith(b".") or b"\n." in message:
        message = PERIOD_REGEX.sub(b"..", message)
    return size, message + b".\r\n"


def _envelope(mail: Mail, server: Extensions) -> tuple[list[bytes], bytes]:
    """MAIL FROM (with the options it needs), RCPT TO and DATA, and the content. Raises
    ValueError for an address that cannot be written, NeedsSmtpUtf8 for one the server cannot
    take."""
    utf8 = not (mail.sender.isascii() and mail.recipient.isascii())
    if utf8 and not server.smtputf8:
        raise NeedsSmtpUtf8(mail.recipient if not mail.recipient.isascii() else mail.sender)
    encoding = "utf-8" if utf8 else "ascii"
    sender, recipient = _quoted(mail.sender, encoding), _quoted(mail.recipient, encoding)
    size, content = _content(mail.message)
    options = [b"SMTPUTF8"] if utf8 else []
    if not mail.message.isascii() and server.eightbitmime:
        options.append(b"BODY=8BITMIME")
    if server.size:
        options.append(b"SIZE=%d" % size)
    commands = [
        b" ".join([b"MAIL FROM:" + sender, *options]) + b"\r\n",
        b"RCPT TO:" + recipient + b"\r\n",
        b"DATA\r\n",
    ]
    return commands, content


def _refusal(mail: Mail, answers: list[aiosmtplib.SMTPResponse]) -> Exception | None:
    """Why the server refused the envelope (the exceptions aiosmtplib raises), or None; the
    answers end at the first refusal when they came one command at a time."""
    if answers[0].code != 250:
        return aiosmtplib.SMTPSenderRefused(answers[0].code, answers[0].message, mail.sender)
    if answers[1].code not in (250, 251):
        refused = aiosmtplib.SMTPRecipientRefused(*answers[1], mail.recipient)
        return aiosmtplib.SMTPRecipientsRefused([refused])
    if answers[2].code != 354:
        return aiosmtplib.SMTPDataError(*answers[2])
    return None


_EXPECTED = ((250,), (250, 251), (354,))  # to MAIL FROM, RCPT TO, DATA


Settled = Callable[[int, Exception | None], None]


class _Transmission:
    """The state of one `transmit`: whose content is on the wire, whether RSET is due."""

    def __init__(self, wire: Wire, server: Extensions, settled: Settled) -> None:
        self.wire, self.server = wire, server
        self._settled = settled
        self.count = 0
        self.in_doubt: int | None = None  # content written, its answer not read yet
        self._leading: int | None = None  # content about to be written
        self._content: tuple[int, bytes] | None = None  # 354 read, content not written yet
        self._reset = False  # a refused envelope: RSET before the next MAIL
        self._resetting = False
        self.callback_failed = False

    def settle(self, index: int, error: Exception | None) -> None:
        self.count += 1
        try:
            self._settled(index, error)
        except BaseException:
            self.callback_failed = True
            raise

    async def answer(self) -> aiosmtplib.SMTPResponse:
        answer = await self.wire.answer()
        if answer.code == 421:  # the server closes the connection: nothing more on this one
            raise aiosmtplib.SMTPResponseException(answer.code, answer.message)
        return answer

    def lead(self) -> bytes:
        """What goes ahead of the next envelope: the last mail's content, or RSET."""
        if self._content is not None:
            (self._leading, content), self._content = self._content, None
            return content
        if self._reset:
            self._reset, self._resetting = False, True
            return b"RSET\r\n"
        return b""

    def write(self, data: bytes) -> None:
        self.wire.write(data)
        if self._leading is not None:  # written: it may be delivered from now on
            self.in_doubt, self._leading = self._leading, None

    async def lead_answered(self) -> None:
        """Reads the answer to what `lead` gave: the mail's end of data, or RSET's."""
        if self.in_doubt is not None:
            answer = await self.answer()
            index, self.in_doubt = self.in_doubt, None
            error = None if answer.code == 250 else aiosmtplib.SMTPDataError(*answer)
            self.settle(index, error)
        elif self._resetting:
            answer = await self.answer()
            self._resetting = False
            if answer.code != 250:  # the connection's state is unknown: it is dropped
                raise aiosmtplib.SMTPResponseException(answer.code, f"RSET: {answer.message}")

    async def envelope(self, lead: bytes, commands: list[bytes]) -> list[aiosmtplib.SMTPResponse]:
        """Writes `lead` and the envelope (together when pipelining) and reads the answers."""
        if self.server.pipelining:
            self.write(lead + b"".join(commands))
            await self.lead_answered()
            return [await self.answer() for _ in commands]
        if lead:
            self.write(lead)
            await self.lead_answered()
        answers = []
        for command, expected in zip(commands, _EXPECTED, strict=True):
            self.write(command)
            answers.append(await self.answer())
            if answers[-1].code not in expected:
                break  # one command at a time: none after a refused one
        return answers

    async def run(self, mails: Sequence[Mail], may_send: Callable[[int], bool]) -> None:
        for index, mail in enumerate(mails):
            try:
                commands, content = _envelope(mail, self.server)
            except ValueError as exc:  # NeedsSmtpUtf8 or an address that cannot be written
                self.settle(index, exc)
                continue
            if not may_send(index):
                break
            answers = await self.envelope(self.lead(), commands)
            refusal = _refusal(mail, answers)
            if refusal is None:
                self._content = (index, content)
                continue
            self.settle(index, refusal)
            if answers[-1].code == 354:  # content asked for a refused mail: state unknown
                raise aiosmtplib.SMTPResponseException(-1, "DATA accepted after a refusal")
            self._reset = True
        lead = self.lead()
        if lead:
            self.write(lead)
            await self.lead_answered()


async def transmit(
    wire: Wire,
    server: Extensions,
    mails: Sequence[Mail],
    *,
    may_send: Callable[[int], bool],
    settled: Settled,
) -> tuple[int, Exception | None]:
    """Sends `mails` in order, each after `may_send(index)` says it may; `settled(index, error)`
    the moment a mail's last answer is read (error None: a 250 to its end of data).

    Returns how many were settled and, when the connection failed (lost, timed out, 421, RSET
    refused), why: the mail whose content was written but not answered is settled with that
    error; those after it are not settled (nothing of theirs was delivered).
    """
    transmission = _Transmission(wire, server, settled)
    try:
        await transmission.run(mails, may_send)
    except BaseException as exc:
        wire.abort()  # mid-transaction: its state is unknown
        if transmission.callback_failed or not isinstance(exc, Exception):
            raise
        if transmission.in_doubt is not None:
            transmission.settle(transmission.in_doubt, exc)
        return transmission.count, exc
    return transmission.count, None
