"""The pipelining SMTP connection against real aiosmtpd servers: batches with PIPELINING offered
and without, refusals mid-batch, servers that drop or stop answering, STARTTLS, TLS and AUTH."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from cli.launcher import free_port
from services.notifications.smtp import Attempt, Outcome, SmtpConnection
from services.notifications.smtp_pipelined import Mail
from shared.settings import Settings

FROM = "team@mentoring.example"


class Server:
    """Keeps what it accepted (recipient, content); refuses recipients 'refuse…' (550) and
    'busy…' (450); offers PIPELINING unless told not to. `during_data(n)` runs in the server's
    loop as the n-th message (from 0) arrives, before its answer."""

    def __init__(self, *, pipelining: bool = True) -> None:
        self.pipelining = pipelining
        self.accepted: list[tuple[str, bytes]] = []
        self.mail_options: list[list[str]] = []
        self.messages = 0
        self.sessions = 0
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.sessions += 1
        if not self.pipelining:
            return list(responses)
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.startswith("refuse"):
            return "550 5.1.1 no such user here"
        if address.startswith("busy"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            n, self.messages = self.messages, self.messages + 1
        answer = await self.during_data(n, server)
        if answer is None:
            with self.lock:
                self.accepted.append((envelope.rcpt_tos[0], envelope.original_content or b""))
                self.mail_options.append(list(envelope.mail_options))
            return "250 Message accepted for delivery"
        return answer

    async def during_data(self, n: int, server: SMTP) -> str | None:
        return None  # None: accepted

    def recipients(self) -> list[str]:
        return [to for to, _ in self.accepted]


class Relay:
    """A TCP relay between client and server counting the client's writes as they arrive: with
    PIPELINING about one a mail, one command at a time about four."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.client_writes = 0
        self._server: asyncio.Server | None = None

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if count:
                    self.client_writes += 1
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(
            self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False)
        )

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


@contextlib.contextmanager
def serving(handler: Server, port: int, **options: Any) -> Iterator[Controller]:
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    handler.controller = controller
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture
def port() -> int:
    return free_port()


def settings(tmp_path: Path, port: int, **options: Any) -> Settings:
    return Settings(data_dir=tmp_path, smtp_port=port, smtp_timeout_seconds=1, **options)


@contextlib.asynccontextmanager
async def connection(tmp_path: Path, port: int, **options: Any) -> AsyncIterator[SmtpConnection]:
    c = SmtpConnection(settings(tmp_path, port, **options))
    try:
        yield c
    finally:
        await c.close()


def mails(*recipients: str) -> list[Mail]:
    return [
        Mail(FROM, to, b"Subject: mail %d\r\nMessage-ID: <m%d@x>\r\n\r\nHello\r\n" % (i, i))
        for i, to in enumerate(recipients)
    ]


def outcomes(attempts: list[Attempt | None]) -> list[str | None]:
    return [None if a is None else a.outcome for a in attempts]


def people(n: int) -> list[str]:
    return [f"p{i}@example.org" for i in range(n)]


async def test_a_batch_goes_in_about_one_write_a_mail_when_the_server_offers_pipelining(
    tmp_path, port
):
    server = Server()
    with serving(server, port):
        async with Relay(port) as relay, connection(tmp_path, relay.port) as c:
            result = await c.send_many(mails(*people(20)))
            assert c.pipelining
            writes = relay.client_writes
    assert outcomes(result) == [Outcome.SENT] * 20
    assert server.recipients() == people(20)
    assert writes <= 20 + 4  # EHLO, the first envelope, a write a mail (content + next), QUIT


async def test_without_pipelining_offered_each_command_waits_for_its_answer(tmp_path, port):
    server = Server(pipelining=False)
    with serving(server, port):
        async with Relay(port) as relay, connection(tmp_path, relay.port) as c:
            result = await c.send_many(mails(*people(20)))
            assert not c.pipelining
            writes = relay.client_writes
    assert outcomes(result) == [Outcome.SENT] * 20
    assert server.recipients() == people(20)
    assert writes >= 4 * 20  # MAIL, RCPT, DATA, content: one at a time


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-at-a-time"])
async def test_refused_recipients_mid_batch_fail_alone_and_the_next_mails_go(
    tmp_path, port, pipelining
):
    recipients = ["a@example.org", "b@example.org", "refuse@example.org", "c@example.org"]
    recipients += ["busy@example.org", "d@example.org", "refuse2@example.org"]
    server = Server(pipelining=pipelining)
    with serving(server, port):
        async with connection(tmp_path, port) as c:
            result = await c.send_many(mails(*recipients))
            again = await c.send(sender=FROM, recipient="e@example.org", message=b"\r\nlater\r\n")
    assert outcomes(result) == [
        Outcome.SENT, Outcome.SENT, Outcome.PERMANENT, Outcome.SENT,
        Outcome.TRANSIENT, Outcome.SENT, Outcome.PERMANENT,
    ]  # fmt: skip
    assert "550" in result[2].reason and "no such user" in result[2].reason  # type: ignore[union-attr]
    assert "450" in result[4].reason  # type: ignore[union-attr]
    # reset after each refusal: the next MAIL was not "503 nested MAIL", on the same connection
    assert again.outcome == Outcome.SENT
    assert server.recipients() == [
        "a@example.org", "b@example.org", "c@example.org", "d@example.org", "e@example.org"
    ]  # fmt: skip
    assert server.sessions == 1


async def test_each_250_is_heard_as_it_is_read_not_at_the_end_of_the_batch(tmp_path, port):
    heard: list[int] = []
    seen_by_server: list[int] = []

    class Watching(Server):
        async def during_data(self, n: int, server: SMTP) -> str | None:
            seen_by_server.append(len(heard))  # when mail n arrives, which 250s were heard
            return None

    with serving(Watching(), port):
        async with connection(tmp_path, port) as c:
            await c.send_many(mails(*people(6)), settled=lambda i, attempt: heard.append(i))
    assert heard == list(range(6))
    assert seen_by_server == list(range(6))  # mail n's content follows the 250 of mail n-1


async def test_a_server_that_drops_mid_batch_and_stays_away_leaves_the_rest_server(tmp_path, port):
    class Dropping(Server):
        async def during_data(self, n: int, server: SMTP) -> str | None:
            if n == 3:  # the 4th mail arrives; it is neither answered nor kept
                assert self.controller is not None and self.controller.server is not None
                self.controller.server.close()  # no new connections from now on
                assert server.transport is not None
                server.transport.abort()
                await asyncio.sleep(1)
            return None

    server = Dropping()
    with serving(server, port):
        async with connection(tmp_path, port) as c:
            result = await c.send_many(mails(*people(7)))
    assert outcomes(result) == [Outcome.SENT] * 3 + [Outcome.SERVER] * 4
    assert all("SMTP" in (a.reason if a else "") for a in result[3:])
    assert server.recipients() == people(3)


async def test_a_server_that_closes_after_some_mails_gets_the_rest_on_a_new_connection(
    tmp_path, port
):
    class Limited(Server):  # Exim's smtp_accept_max_per_connection, say
        async def during_data(self, n: int, server: SMTP) -> str | None:
            if n % 3 == 2:
                with self.lock:
                    self.accepted.append(("limit", b""))
                assert server.transport is not None
                server.transport.write(b"250 accepted\r\n421 4.7.0 too many messages, bye\r\n")
                server.transport.close()
                await asyncio.sleep(1)
            return None

    server = Limited()
    with serving(server, port):
        async with connection(tmp_path, port) as c:
            result = await c.send_many(mails(*people(8)))
    assert outcomes(result) == [Outcome.SENT] * 8
    assert len(server.accepted) == 8
    assert server.sessions == 3


async def test_a_mail_whose_answer_does_not_come_is_server_and_the_rest_go_on_a_new_connection(
    tmp_path, port
):
    class Stalling(Server):
        async def during_data(self, n: int, server: SMTP) -> str | None:
            if n == 2:
                await asyncio.sleep(3)  # longer than the client's 1 s timeout
            return None

    server = Stalling()
    with serving(server, port):
        async with connection(tmp_path, port) as c:
            result = await c.send_many(mails(*people(5)))
    assert outcomes(result) == [
        Outcome.SENT,
        Outcome.SENT,
        Outcome.SERVER,
        Outcome.SENT,
        Outcome.SENT,
    ]
    assert "SMTPReadTimeoutError" in result[2].reason  # type: ignore[union-attr]
    assert server.sessions == 2


async def test_a_pooled_connection_the_server_closed_is_reopened_without_failing_a_mail(
    tmp_path, port
):
    server = Server()
    async with connection(tmp_path, port) as c:
        with serving(server, port):
            assert outcomes(await c.send_many(mails(*people(2)))) == [Outcome.SENT] * 2
        with serving(server, port):  # the server restarted meanwhile: its connections closed
            assert outcomes(await c.send_many(mails(*people(2)))) == [Outcome.SENT] * 2
    assert server.sessions == 2
    assert len(server.accepted) == 4


async def test_mails_held_back_are_none_and_nothing_of_theirs_is_sent(tmp_path, port):
    server = Server()
    with serving(server, port):
        async with connection(tmp_path, port) as c:
            result = await c.send_many(mails(*people(6)), may_send=lambda i: i < 4)
    assert outcomes(result) == [Outcome.SENT] * 4 + [None] * 2
    assert server.recipients() == people(4)


async def test_content_is_dot_stuffed_with_crlf_line_ends_and_8bit_goes_as_8bitmime(tmp_path, port):
    odd = b"Subject: odd\r\n\r\n" + ".dot\n..two\r\nmid . dot\r\n.\r\nno end: \u00fc\rx".encode()
    dotted = b".\r\nSubject: dotted\r\n\r\n.\r\n..\r\n. x\r\nlast"  # CRLF only
    plain = b"Subject: plain\r\n\r\nnothing to change\r\n"
    server = Server()
    with serving(server, port):
        async with connection(tmp_path, port) as c:
            batch = [Mail(FROM, "a@example.org", m) for m in (odd, dotted, plain)]
            result = await c.send_many(batch)
    assert outcomes(result) == [Outcome.SENT] * 3
    crlf = odd.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
    assert [content for _, content in server.accepted] == [crlf, dotted + b"\r\n", plain]
    sizes = [f"SIZE={len(content)}" for _, content in server.accepted]
    assert server.mail_options == [["BODY=8BITMIME", sizes[0]], [sizes[1]], [sizes[2]]]


async def test_an_address_needing_smtputf8_fails_alone_unless_the_server_offers_it(tmp_path, port):
    batch = mails("a@example.org", "üser@example.org", "b@example.org")
    for offered in (False, True):
        server = Server()
        with serving(server, port, enable_SMTPUTF8=offered):
            async with connection(tmp_path, port) as c:
                result = await c.send_many(batch)
        if offered:
            assert outcomes(result) == [Outcome.SENT] * 3
            assert server.recipients() == ["a@example.org", "üser@example.org", "b@example.org"]
        else:
            assert outcomes(result) == [Outcome.SENT, Outcome.PERMANENT, Outcome.SENT]
            assert "needs SMTPUTF8" in result[1].reason  # type: ignore[union-attr]
            assert server.recipients() == ["a@example.org", "b@example.org"]


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, trusted through SSL_CERT_FILE."""
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


async def test_starttls_then_a_pipelined_batch_when_the_server_requires_it(
    tmp_path, port, certificate
):
    server = Server()
    tls = server_tls(certificate)
    with serving(server, port, tls_context=tls, require_starttls=True):
        async with connection(tmp_path, port, smtp_security="starttls") as c:
            result = await c.send_many(mails(*people(5)))
            assert c.pipelining
        async with connection(tmp_path, port) as plain:  # without STARTTLS: refused
            refused = await plain.send_many(mails("a@example.org"))
    assert outcomes(result) == [Outcome.SENT] * 5
    assert server.recipients() == people(5)
    assert refused[0] is not None and refused[0].outcome != Outcome.SENT


async def test_implicit_tls_then_a_pipelined_batch(tmp_path, port, certificate):
    server = Server()
    with serving(server, port, ssl_context=server_tls(certificate)):
        async with connection(tmp_path, port, smtp_security="tls") as c:
            result = await c.send_many(mails(*people(5)))
            assert c.pipelining
    assert outcomes(result) == [Outcome.SENT] * 5
    assert server.recipients() == people(5)


def accept_mentoring(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"mentoring", b"s3cret")
    return AuthResult(success=ok)


@pytest.mark.parametrize("password", ["s3cret", "wrong"])
async def test_auth_with_the_configured_login_before_a_pipelined_batch(tmp_path, port, password):
    server = Server()
    auth = {"authenticator": accept_mentoring, "auth_require_tls": False}
    with serving(server, port, **auth):
        options = {"smtp_username": "mentoring", "smtp_password": password}
        async with connection(tmp_path, port, **options) as c:
            result = await c.send_many(mails(*people(3)))
    if password == "s3cret":
        assert outcomes(result) == [Outcome.SENT] * 3
        assert server.recipients() == people(3)
    else:  # refused (aiosmtplib then tries LOGIN, which aiosmtpd leaves unanswered): SERVER
        assert outcomes(result) == [Outcome.SERVER] * 3
        assert server.recipients() == []
