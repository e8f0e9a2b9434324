"""Emails per second into a local SMTP sink: the service's sender against raw aiosmtplib.

    .venv/bin/python -m bench.email [--emails 2000] [--pool 4] [--rounds 3] [--database-url URL]
                                    [--security both|plain|starttls] [--service-cohort 1000]
                                    [--cohort 2000] [--flow-rounds 1] [--timeline]

All in one run, on one sink (aiosmtpd in a process of its own), with the same invitation bytes,
once over plain SMTP and once with STARTTLS (the sink then requires it, as real submission
servers do; a self-signed certificate made with openssl, trusted through SSL_CERT_FILE):
- naive: one new SMTP connection per email, one email after another (the sender before);
- ceiling: raw aiosmtplib over `--pool` reused connections, nothing else;
- sender: the service's Sender with its bookkeeping: claim due send timers in batches, read the
  deliveries, send a share of each batch over each pooled connection, pipelined (the sink offers
  PIPELINING), journal each 250, record sent + notification.sent per batch;
- raw pipelined: a bare pipelining client over the pool, nothing else (what PIPELINING allows).
Targets: sender >= 70% of the ceiling, >= 4x naive.

notifications alone (`--service-cohort`, 0 to skip): the service on a real nats-server, N people
as N/2 pairs: participant.registered for each, then one session.scheduled per pair; time from
the first session.scheduled published to the last invitation in the sink, as a share of the
plain ceiling's rate. Then session.rescheduled for 50 pairs one at a time: published -> updated
invitation in the sink, p50/p99.

The whole flow (`--cohort`, 0 to skip; the issue's target): pairing, scheduling and
notifications as processes (as `up` runs them) on one nats-server, the cohort registered (half
mentors), then matching.requested; until every invitation of every planned session is in the
sink. The target (>= 40%) is against the raw pooled rate for the same invitations: after the
flow, the bytes it sent (read from notifications' deliveries; real invitations with VTIMEZONEs,
about twice the size of the fixed one above) are sent again by raw aiosmtplib over the same pool
to the same sink; the share of the fixed invitation's ceiling is printed too. With the first and
last of each event kind on the bus, and with `--timeline` each second's CPU per process and
events (where the time goes). `--flow-rounds N` runs the flow N times, each on fresh services,
databases and nats-server, and prints the median share: on this shared machine one flow's share
ranged 0.25-0.47 for the same code within an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import nats
from sqlalchemy import func, select

from cli.launcher import NatsServer, free_port
from services.notifications import deliveries, store
from services.notifications.app import definition
from services.notifications.journal import SentJournal
from services.notifications.messages import InvitationMail, Recipient, compose_invitation
from services.notifications.mime import Mailbox
from services.notifications.sender import Sender
from services.notifications.smtp import SmtpPool
from shared.bus import STREAM, ensure_stream, event_headers, publish_acked
from shared.clock import SystemClock
from shared.cpu import CpuPool
from shared.db import create_schema, make_engine, make_sessions
from shared.events import (
    MatchingRequested,
    ParticipantRegistered,
    SessionRescheduled,
    SessionScheduled,
)
from shared.service import Service
from shared.settings import Settings
from shared.timers import schedule
from shared.unit_of_work import unit_of_work

FROM = "team@mentoring.example"
ICAL = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mentorship//EN\r\nMETHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\nUID:{uid}\r\nSEQUENCE:0\r\nDTSTAMP:20270301T080000Z\r\n"
    "DTSTART:20270303T150000Z\r\nDTEND:20270303T160000Z\r\nSUMMARY:Mentorship kickoff\r\n"
    "ORGANIZER:mailto:team@mentoring.example\r\n"
    "ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:a@example.org\r\n"
    "ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:b@example.org\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
)


def invitation(i: int, tag: str) -> tuple[str, bytes]:
    """(Message-ID, bytes) of one realistic invitation."""
    now = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)
    mail_id = f"<{tag}-{i}@mentoring.example>"
    mail = InvitationMail(
        sender=Mailbox("Mentoring Team", FROM),
        recipient=Recipient(f"Person {i}", f"p{i}@example.org", "Europe/Berlin", "mentee"),
        other_names=[f"Mentor {i}"],
        kind="kickoff",
        start=now + dt.timedelta(days=2, hours=7),
        end=now + dt.timedelta(days=2, hours=8),
        ical=ICAL.format(uid=f"{tag}-{i}@mentorship"),
        method="REQUEST",
        message_id=mail_id,
        sent_at=now,
        program_name="Mentoring",
    )
    return mail_id, compose_invitation(mail)


class _Sink:
    """aiosmtpd handler: one line per message accepted: time, Message-ID, 1 for a calendar
    REQUEST (an invitation or update), else 0. Written before the 250. It offers PIPELINING
    (RFC 2920), as Postfix, Exim and Mailpit do: aiosmtpd reads commands in order, so it takes
    them pipelined, it only does not say so."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or b""
        head = data.split(b"\r\n\r\n", 1)[0]
        found = next(
            (ln[11:].strip() for ln in head.split(b"\r\n") if ln[:11].lower() == b"message-id:"),
            b"<none>",
        )
        invite = b"1" if b"method=request" in data.lower() else b"0"
        os.write(self._fd, b"%.6f %s %s\n" % (time.time(), found, invite))
        return "250 Message accepted for delivery"


def serve_sink(path: str, port: int, cert: str | None = None) -> None:
    """The sink, until killed (in a process of its own); with `cert` it offers STARTTLS and
    requires it, as real submission servers do."""
    from aiosmtpd.controller import Controller

    tls = None
    if cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, cert.replace(".crt", ".key"))
    controller = Controller(
        _Sink(Path(path)),
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=tls is not None,
    )
    controller.start()
    while True:
        time.sleep(3600)


def make_certificate(folder: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (the clients trust it through SSL_CERT_FILE)."""
    cert, key = folder / "sink.crt", folder / "sink.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert


@contextlib.contextmanager
def sink_process(
    log: Path, port: int, cert: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The SMTP sink in a process of its own (it must not share the sender's CPU or GIL)."""
    code = f"from bench.email import serve_sink; serve_sink({str(log)!r}, {port}, " + (
        f"{str(cert)!r})" if cert else "None)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process (all its threads) and its live children (a service's CPU-pool
    worker) have used so far (Linux /proc; 0 elsewhere)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    family, todo = set(), [pid]
    while todo:
        one = todo.pop()
        family.add(one)
        todo += [child for child, f in stats.items() if int(f[1]) == one and child not in family]
    ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in family if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def _sink_lines(log: Path) -> list[tuple[float, str, bool]]:
    return SinkLog(log).read()


class SinkLog:
    """The sink's lines (time, Message-ID, invitation?), read as they are appended: a poll
    reads and parses only what is new, so the bench watching a run of thousands of mails does
    not take the CPU from the services it measures (re-reading the whole log every 50 ms did:
    about a seventh of the whole flow's CPU samples, in a py-spy profile)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[float, str, bool]] = []
        self._offset = 0
        self._rest = b""

    def read(self) -> list[tuple[float, str, bool]]:
        """Every line so far."""
        if not self.path.exists():
            return self.lines
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        *complete, self._rest = (self._rest + data).split(b"\n")
        for line in complete:
            at, mid, invite = line.decode().rsplit(" ", 2)
            self.lines.append((float(at), mid, invite == "1"))
        return self.lines


async def naive(port: int, mails: list[tuple[str, bytes]], pool: int, tls: bool) -> float:
    """A new connection per email, one email after another (the sender this one replaced)."""
    started = time.perf_counter()
    for _, message in mails:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10, start_tls=tls)
        await client.connect()
        await client.sendmail(FROM, ["p@example.org"], message)
        await client.quit()
    return time.perf_counter() - started


async def ceiling(port: int, mails: list[tuple[str, bytes]], pool: int, tls: bool) -> float:
    """Raw aiosmtplib over `pool` reused connections."""
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10, start_tls=tls)
        for _ in range(pool)
    ]
    for client in clients:
        await client.connect()
        await client.ehlo()
    queue = list(mails)

    async def worker(client: aiosmtplib.SMTP) -> None:
        while queue:
            _, message = queue.pop()
            await client.sendmail(FROM, ["p@example.org"], message)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.quit()
    return elapsed


class _Pipelined:
    """A minimal SMTP client that pipelines (RFC 2920): each mail's content and final dot, the
    next mail's MAIL, RCPT and DATA go in one write, and their four answers are read together:
    one round trip per mail instead of aiosmtplib's four. What PIPELINING allows with nothing
    else: no bookkeeping, no refusals, no reconnects (the service's sender pipelines the same
    way through services.notifications.smtp_pipelined, ADR 0014)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, tls: bool) -> _Pipelined:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        await client.answer(220)
        writer.write(b"EHLO bench\r\n")
        await client.answer(250)
        if tls:
            writer.write(b"STARTTLS\r\n")
            await client.answer(220)
            await writer.start_tls(ssl.create_default_context(), server_hostname="127.0.0.1")
            writer.write(b"EHLO bench\r\n")
            await client.answer(250)
        return client

    async def answer(self, expected: int) -> None:
        while True:
            line = await self.reader.readline()
            if line[3:4] != b"-":
                break
        if int(line[:3]) != expected:
            raise RuntimeError(f"expected {expected}, got {line!r}")

    async def send_all(self, messages: list[bytes]) -> None:
        envelope = b"MAIL FROM:<%s>\r\nRCPT TO:<p@example.org>\r\nDATA\r\n" % FROM.encode()
        if not messages:
            return
        self.writer.write(envelope)
        for i, message in enumerate(messages):
            await self.answer(250)  # MAIL
            await self.answer(250)  # RCPT
            await self.answer(354)  # DATA
            body = message.replace(b"\r\n.", b"\r\n..")
            body = (b"." + body if body.startswith(b".") else body).rstrip(b"\r\n")
            last = i == len(messages) - 1
            self.writer.write(body + b"\r\n.\r\n" + (b"" if last else envelope))
            await self.answer(250)  # the message

    async def quit(self) -> None:
        self.writer.write(b"QUIT\r\n")
        await self.answer(221)
        self.writer.close()


async def pipelined(port: int, mails: list[tuple[str, bytes]], pool: int, tls: bool) -> float:
    """Raw pipelined SMTP over `pool` reused connections: what PIPELINING would allow."""
    clients = [await _Pipelined.connect(port, tls) for _ in range(pool)]
    shares = [[m for _, m in mails[i::pool]] for i in range(pool)]
    started = time.perf_counter()
    await asyncio.gather(*(c.send_all(share) for c, share in zip(clients, shares, strict=True)))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.quit()
    return elapsed


@contextlib.asynccontextmanager
async def sender_db(folder: Path, database_url: str | None) -> AsyncIterator[Any]:
    url = database_url or f"sqlite+aiosqlite:///{folder / 'notifications.sqlite3'}"
    engine = make_engine(url, schema="bench_email")
    await create_schema(engine, store.Base.metadata, schema="bench_email")
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            for table in reversed(store.Base.metadata.sorted_tables):
                await conn.execute(table.delete())
        await engine.dispose()


async def service_sender(
    port: int,
    mails: list[tuple[str, bytes]],
    pool: int,
    folder: Path,
    database_url: str | None,
    tls: bool,
) -> float:
    """The service's Sender, from due deliveries to every one recorded sent."""
    settings = Settings(
        data_dir=folder,
        smtp_port=port,
        mail_from=FROM,
        smtp_pool_size=pool,
        smtp_security="starttls" if tls else "none",
    )
    clock = SystemClock()
    cpu = CpuPool(1, threads=True)
    async with sender_db(folder, database_url) as engine:
        sessions = make_sessions(engine)

        def uow() -> Any:
            return unit_of_work(
                sessions=sessions,
                tables=store.delivery_tables,
                clock=clock,
                settings=settings,
                source="notifications",
                cpu=cpu,
            )

        async with uow() as work:
            for i, (mail_id, message) in enumerate(mails):
                key = f"bench/{mail_id}/p{i}"
                delivery = deliveries.delivery_id(key)
                work.session.add(
                    store.Delivery(
                        program_id="bench",
                        delivery_id=delivery,
                        idempotency_key=key,
                        recipient_id=f"p{i}",
                        recipient_email="p@example.org",
                        kind="session.kickoff",
                        source_event_id=str(uuid.uuid4()),
                        message_id=mail_id,
                        message=message,
                        status="pending",
                        attempts=0,
                    )
                )
                await schedule(
                    work.session,
                    store.timers,
                    program_id="bench",
                    kind=deliveries.SEND,
                    key=delivery,
                    due_at=clock.now(),
                )
        smtp = SmtpPool(settings, pool)
        journal = SentJournal(folder / "journal")
        sender = Sender(
            sessions=sessions,
            unit_of_work=uow,
            clock=clock,
            pool=smtp,
            journal=journal,
            mail_from=FROM,
        )
        # connected before the clock starts, as the ceiling's are (a running service's pool is)
        await asyncio.gather(*(c._connected() for c in smtp._all))
        started = time.perf_counter()
        sent = await sender.run_due()
        elapsed = time.perf_counter() - started
        await smtp.close()
        journal.close()
        assert sent == len(mails) and sender.sent == len(mails), (sent, sender.sent)
    cpu.close()
    return elapsed


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


async def senders(args: argparse.Namespace, folder: Path, tls: bool) -> float:
    """The three sender rates over plain SMTP or STARTTLS; returns the ceiling's median rate."""
    port = free_port()
    variant = "starttls" if tls else "plain"
    log = folder / f"sink-{variant}.ids"
    cert = make_certificate(folder) if tls else None
    if cert:
        os.environ["SSL_CERT_FILE"] = str(cert)  # what the clients trust, as a CA bundle would
    results: dict[str, list[float]] = {"naive": [], "ceiling": [], "sender": [], "pipelined": []}
    print(f"\n{variant}:" + (" (the sink requires STARTTLS, as real servers do)" if tls else ""))
    with sink_process(log, port, cert):
        for r in range(args.rounds):
            runs: list[tuple[str, Callable[..., Any]]] = [
                ("naive", lambda m: naive(port, m, args.pool, tls)),
                ("ceiling", lambda m: ceiling(port, m, args.pool, tls)),
                (
                    "sender",
                    lambda m, r=r: service_sender(
                        port, m, args.pool, folder / f"sender-{variant}-{r}", args.database_url, tls
                    ),
                ),
                ("pipelined", lambda m: pipelined(port, m, args.pool, tls)),
            ]
            for name, run in runs:
                mails = [invitation(i, f"{name}{r}") for i in range(args.emails)]
                seconds = await run(mails)
                results[name].append(_rate(args.emails, seconds))
                print(f"  round {r + 1} {name:9s} {results[name][-1]:8.0f} emails/s", flush=True)
    ids = [mid for _, mid, _ in _sink_lines(log)]
    sender_ids = [i for i in ids if i.startswith("<sender")]
    expected = args.emails * args.rounds
    median = {name: statistics.median(rates) for name, rates in results.items()}
    what = f"{args.emails} invitations x {args.rounds} rounds, pool of {args.pool}"
    print(f"{what}, {variant} (medians):")
    for name in ("naive", "ceiling", "sender", "pipelined"):
        print(f"  {name:9s} {median[name]:8.0f} emails/s")
    print(
        f"  {variant}: sender / ceiling = {median['sender'] / median['ceiling']:.2f} (target >= "
        f"0.70); sender / naive = {median['sender'] / median['naive']:.1f}x (target >= 4x); "
        f"ceiling / naive = {median['ceiling'] / median['naive']:.1f}x; raw pipelined / naive "
        f"= {median['pipelined'] / median['naive']:.1f}x; sender / raw pipelined = "
        f"{median['sender'] / median['pipelined']:.2f} (the sender pipelines too)"
    )
    print(
        f"  sink: {len(sender_ids)} sender Message-IDs for {expected} deliveries, "
        f"{len(sender_ids) - len(set(sender_ids))} duplicates"
    )
    return median["ceiling"]


# --- end to end: events on NATS -> the notifications service -> the sink ----------------------


def _people(n: int) -> list[ParticipantRegistered]:
    now = SystemClock().now()
    return [
        ParticipantRegistered(
            program_id="bench",
            occurred_at=now,
            participant_id=f"p{i}",
            email=f"p{i}@example.org",
            display_name=f"Person {i}",
            role="mentor" if i % 2 == 0 else "mentee",
            capacity=2 if i % 2 == 0 else None,
            timezone=["Europe/Berlin", "Asia/Tokyo", "America/New_York"][i % 3],
            working_hours=[{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)],
            languages=["en"],
        )
        for i in range(n)
    ]


def _scheduled(pair: int) -> SessionScheduled:
    start = dt.datetime(2027, 3, 3, 15, tzinfo=dt.UTC) + dt.timedelta(hours=pair % 40)
    return SessionScheduled(
        program_id="bench",
        occurred_at=SystemClock().now(),
        session_id=f"s{pair}",
        pair_id=f"pair{pair}",
        kind="kickoff",
        start=start,
        end=start + dt.timedelta(hours=1),
        anchor_timezone="Europe/Berlin",
        attendee_ids=[f"p{2 * pair}", f"p{2 * pair + 1}"],
        uid=f"s{pair}@mentorship",
        sequence=0,
        ical=ICAL.format(uid=f"s{pair}@mentorship"),
    )


def _rescheduled(pair: int) -> SessionRescheduled:
    start = dt.datetime(2027, 3, 4, 15, tzinfo=dt.UTC)
    return SessionRescheduled(
        program_id="bench",
        occurred_at=SystemClock().now(),
        session_id=f"s{pair}",
        pair_id=f"pair{pair}",
        previous_start=dt.datetime(2027, 3, 3, 15, tzinfo=dt.UTC),
        start=start,
        end=start + dt.timedelta(hours=1),
        attendee_ids=[f"p{2 * pair}", f"p{2 * pair + 1}"],
        uid=f"s{pair}@mentorship",
        sequence=1,
        ical=ICAL.format(uid=f"s{pair}@mentorship").replace("SEQUENCE:0", "SEQUENCE:1"),
        reason="the mentor is travelling",
    )


async def _publish(js: Any, events: list[Any]) -> None:
    for event in events:
        headers = event_headers(event, source="bench", traceparent=None)
        await publish_acked(js, event.subject, event.model_dump_json().encode(), headers)


async def _until(check: Callable[[], Any], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: gave up waiting for {what}")
        await asyncio.sleep(0.01)


def _count(log: Path) -> int:
    return log.read_bytes().count(b"\n") if log.exists() else 0


async def service_end_to_end(args: argparse.Namespace, folder: Path, ceiling_rate: float) -> None:
    """notifications alone: session.scheduled for a cohort -> last invitation;
    session.rescheduled -> update."""
    people = args.service_cohort - args.service_cohort % 2
    nats_server = NatsServer(free_port(), folder / "nats", folder / "nats.log")
    nats_server.start()
    port, log = free_port(), folder / "e2e.ids"
    settings = Settings(
        data_dir=folder / "e2e",
        nats_url=nats_server.url,
        database_url=args.database_url,
        smtp_port=port,
        smtp_pool_size=args.pool,
        mail_from=FROM,
    )
    try:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await ensure_stream(js)
        with sink_process(log, port):
            service = Service(definition(), settings, SystemClock())
            async with service.started() as running:
                await running.cpu.run(len, [])  # the CPU pool's worker starts once, up front
                await _publish(js, _people(people))

                async def contacts() -> int:
                    async with running.sessions() as session:
                        return int(
                            await session.scalar(select(func.count(store.Contact.participant_id)))
                            or 0
                        )

                async def registered() -> bool:
                    return bool(await contacts() >= people)

                await _until(registered, 600, f"{people} registrations")
                started = time.perf_counter()
                await _publish(js, [_scheduled(p) for p in range(people // 2)])

                async def invited() -> bool:
                    return bool(_count(log) >= people)

                await _until(invited, 1200, f"{people} invitations")
                elapsed = time.perf_counter() - started
                rate = people / elapsed
                print(
                    f"\nnotifications alone, {people} people: session.scheduled published -> "
                    "last of "
                    f"{people} invitations in the sink in {elapsed:.1f}s = {rate:.0f} emails/s = "
                    f"{rate / ceiling_rate:.2f} of the raw pooled rate (target >= 0.40)"
                )
                latencies = []
                for pair in range(min(50, people // 2)):
                    before = _count(log)
                    t0 = time.perf_counter()
                    await _publish(js, [_rescheduled(pair)])

                    async def updated(before: int = before) -> bool:
                        return _count(log) >= before + 2

                    await _until(updated, 120, "the update")
                    latencies.append(time.perf_counter() - t0)
                latencies.sort()
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
                print(
                    f"session.rescheduled published -> both updated invitations in the sink: "
                    f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
                    f"({len(latencies)} reschedules, one at a time)"
                )
            ids = [mid for _, mid, _ in _sink_lines(log)]
            print(f"sink: {len(ids)} messages, {len(ids) - len(set(ids))} duplicate Message-IDs")
        await nc.close()
    finally:
        nats_server.stop()


# --- the whole flow: matching.requested -> pairing -> scheduling -> notifications -> sink ----


def _cohort(n: int) -> list[dict[str, Any]]:
    """N registrations: half mentors (one mentee each), half mentees, in four zones."""
    zones = ["Europe/Berlin", "Europe/London", "America/New_York", "Europe/Madrid"]
    hours = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)]
    bodies = []
    for i in range(n):
        mentor = i % 2 == 0
        body: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "occurred_at": SystemClock().now().isoformat(),
            "program_id": "bench",
            "schema_version": 1,
            "participant_id": f"p{i}",
            "email": f"p{i}@example.org",
            "display_name": f"Person {i}",
            "role": "mentor" if mentor else "mentee",
            "timezone": zones[i % len(zones)],
            "working_hours": hours,
            "languages": ["en"],
            "skills_offered": ["python", "leadership"] if mentor else [],
            "skills_sought": [] if mentor else ["python"],
        }
        if mentor:
            body["capacity"] = 1
        bodies.append(body)
    return bodies


PIPELINE = ("pairing", "scheduling", "notifications")
QUIET = 120.0  # no new session for this long: pairs left without one stay so


async def _flow_invitations(args: argparse.Namespace, folder: Path) -> list[tuple[str, bytes]]:
    """The invitations the whole flow sent (its session mails, as stored by notifications)."""
    settings = Settings(data_dir=folder / "pipeline", database_url=args.database_url)
    engine = make_engine(settings.database_url_for("notifications"), schema="notifications")
    d = store.Delivery
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(d.message_id, d.message).where(d.status == "sent", d.kind.like("session.%"))
            )
            return [(row.message_id, bytes(row.message)) for row in rows]
    finally:
        await engine.dispose()


async def _sample_cpu(
    watched: dict[str, int], into: list[tuple[float, dict[str, float]]], every: float = 0.5
) -> None:
    """Each process's CPU seconds so far, every half second, until cancelled."""
    while True:
        into.append((time.perf_counter(), {n: cpu_seconds(pid) for n, pid in watched.items()}))
        await asyncio.sleep(every)


def _print_timeline(
    samples: list[tuple[float, dict[str, float]]],
    seen: dict[str, list[float]],
    started: float,
    invited: list[float],
) -> None:
    """Per second of the flow: each process's share of a core, and the events on the bus."""
    names = list(samples[0][1])
    kinds = [s.removeprefix("mentorship.").split(".")[-1] for s in WATCH[1:]]
    print("  per second (CPU: share of one core; then events seen on the bus that second):")
    print(
        "    "
        + "  s "
        + "".join(f"{n[:13]:>14s}" for n in names)
        + "".join(f"{k[:10]:>11s}" for k in kinds)
        + f"{'in sink':>9s}"
    )
    end = samples[-1][0] - started
    for second in range(int(end) + 1):
        lo, hi = started + second, started + second + 1
        inside = [s for s in samples if lo - 0.26 <= s[0] <= hi + 0.26]
        if len(inside) < 2:
            continue
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        shares = [(c1[n] - c0[n]) / (t1 - t0) for n in names]
        counts = [sum(1 for t in seen[s] if lo <= t < hi) for s in WATCH[1:]]
        sunk = sum(1 for t in invited if second <= t < second + 1)
        print(
            "    "
            + f"{second:3d} "
            + "".join(f"{x:14.2f}" for x in shares)
            + "".join(f"{c:11d}" for c in counts)
            + f"{sunk:9d}"
        )


WATCH = (
    "mentorship.matching.completed",
    "mentorship.pair.formed",
    "mentorship.session.scheduled",
    "mentorship.notification.sent",
)


async def pipeline(args: argparse.Namespace, folder: Path, ceiling_rate: float) -> float | None:
    """The three services as processes (as `up` runs them) on one nats-server: the cohort
    registered, then matching.requested; until every invitation of every planned session is
    in the sink. Where the time goes: first and last of each event kind on the bus."""
    from bench.throughput import _ready, _start, drained, publish_all, wait_for

    people = args.cohort - args.cohort % 2
    nats_server = NatsServer(free_port(), folder / "pnats", folder / "pnats.log")
    nats_server.start()
    port, log = free_port(), folder / "pipeline.ids"
    env = dict(os.environ) | {
        "MENTORSHIP_NATS_URL": nats_server.url,
        "MENTORSHIP_DATA_DIR": str(folder / "pipeline"),
        "MENTORSHIP_SMTP_HOST": "127.0.0.1",
        "MENTORSHIP_SMTP_PORT": str(port),
        "MENTORSHIP_SMTP_POOL_SIZE": str(args.pool),
        "MENTORSHIP_MAIL_FROM": FROM,
        "MENTORSHIP_LOG_LEVEL": "WARNING",
        "MENTORSHIP_PAIRING_CONSENT_REQUIRED": "false",
    }
    if args.database_url:
        env["MENTORSHIP_DATABASE_URL"] = args.database_url
    ports = {name: free_port() for name in PIPELINE}
    env |= {f"MENTORSHIP_{name.upper()}_HTTP_PORT": str(p) for name, p in ports.items()}
    (folder / "pipeline").mkdir(parents=True, exist_ok=True)
    seen: dict[str, list[float]] = {subject: [] for subject in WATCH}
    attendees: list[int] = []
    kickoffs: set[str] = set()  # pairs with a planned session
    cpu_samples: list[tuple[float, dict[str, float]]] = []  # (perf_counter, CPU s so far)
    same: list[tuple[str, bytes]] = []
    same_rate, resent_at = 0.0, float("inf")
    try:
        with sink_process(log, port) as sink_proc:
            nc = await nats.connect(nats_server.url)
            js = nc.jetstream()
            await ensure_stream(js)
            procs = [
                _start([sys.executable, "-m", f"services.{name}"], env, folder / f"p-{name}.log")
                for name in PIPELINE
            ]
            try:
                for name in PIPELINE:

                    async def up(port: int = ports[name]) -> tuple[int, int]:
                        return (1 if await _ready(port) else 0), 1

                    try:
                        await wait_for(up, f"{name} starting", 300)
                    except TimeoutError:
                        tail = (folder / f"p-{name}.log").read_text()[-3000:]
                        raise TimeoutError(
                            f"{name} did not get ready; its log ends:\n{tail}"
                        ) from None

                async def on_message(msg: Any) -> None:
                    seen[msg.subject].append(time.perf_counter())
                    if msg.subject == "mentorship.session.scheduled":
                        body = json.loads(msg.data)
                        attendees.append(len(body["attendee_ids"]))
                        kickoffs.add(body["pair_id"])

                for subject in WATCH:
                    await nc.subscribe(subject, cb=on_message)
                durables = [c.name for c in await js.consumers_info(STREAM) if "__" in c.name]
                await publish_all(js, _cohort(people))
                await wait_for(lambda: drained(js, durables, 0), "registrations consumed", 600)
                started = time.perf_counter()
                wall = time.time()
                watched = {
                    **{name: proc.pid for name, proc in zip(PIPELINE, procs, strict=True)},
                    "sink": sink_proc.pid,
                    "nats-server": nats_server.proc.pid if nats_server.proc else 0,
                }
                cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
                bench_before = sum(os.times()[:2])  # this process alone
                await _publish(
                    js,
                    [
                        MatchingRequested(
                            program_id="bench",
                            occurred_at=SystemClock().now(),
                            round_id=f"bench-{uuid.uuid4().hex[:8]}",
                            requested_by="bench",
                        )
                    ],
                )

                sink = SinkLog(log)
                counted, invited = 0, 0
                timeline = asyncio.create_task(_sample_cpu(watched, cpu_samples))

                async def all_invited() -> tuple[int, int]:
                    nonlocal counted, invited
                    lines = sink.read()
                    invited += sum(1 for at, _, inv in lines[counted:] if inv and at >= wall)
                    counted = len(lines)
                    planned = sum(attendees)
                    last = max(seen["mentorship.session.scheduled"] or [started])
                    quiet = time.perf_counter() - last
                    every_pair = len(kickoffs) >= len(seen["mentorship.pair.formed"])
                    settled = (
                        bool(seen["mentorship.matching.completed"])
                        and invited >= planned
                        and (every_pair or quiet > QUIET)
                        # nothing left to consume
                        and (await drained(js, durables, 0)) == (len(durables),) * 2
                    )
                    completed = seen["mentorship.matching.completed"]
                    if not planned and completed and time.perf_counter() - completed[0] > QUIET:
                        raise RuntimeError(
                            "the round planned no session (pairs formed: "
                            f"{len(seen['mentorship.pair.formed'])}); see the services' logs"
                        )
                    return invited, (planned if settled and planned else invited + 1)

                await wait_for(all_invited, "invitations in the sink", 1800)
                flow_wall = time.perf_counter() - started
                timeline.cancel()
                await asyncio.gather(timeline, return_exceptions=True)
                used = {n: cpu_seconds(pid) - cpu_before[n] for n, pid in watched.items()}
                used["this bench"] = sum(os.times()[:2]) - bench_before
                print(
                    f"  CPU seconds in the flow's {flow_wall:.1f} s (2 cores: "
                    f"{2 * flow_wall:.1f} at most): "
                    + ", ".join(f"{n} {c:.1f}" for n, c in used.items())
                )
                info = await js.stream_info(STREAM, subjects_filter="mentorship.>")
                subjects = info.state.subjects or {}
                print(
                    "  events on the stream: "
                    + ", ".join(
                        f"{k.removeprefix('mentorship.')} {v}" for k, v in sorted(subjects.items())
                    )
                )
                tail = (folder / "p-scheduling.log").read_text()[-1500:]
                if tail.strip():
                    print(f"  scheduling's log ends:\n{tail}")
            finally:
                await nc.drain()
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            resent_at = time.time()  # the flow's lines in the sink are those before this
            same = await _flow_invitations(args, folder)
            if same:  # the median of --rounds, as the ceiling above
                times = [await ceiling(port, same, args.pool, False) for _ in range(args.rounds)]
                same_rate = len(same) / statistics.median(times)
    finally:
        nats_server.stop()
    print(f"  pairs with a planned session: {len(kickoffs)} of {len(seen[WATCH[1]])} formed")
    lines = [(at, inv) for at, _, inv in _sink_lines(log) if wall <= at < resent_at]
    invites = [at for at, inv in lines if inv]
    last = max(invites) - wall
    rate = len(invites) / last
    print(
        f"\nwhole flow, {people} people: matching.requested -> the last of {len(invites)} "
        f"invitations ({len(attendees)} sessions) in the sink in {last:.1f}s = {rate:.0f} "
        f"invitations/s; {len(lines) - len(invites)} other mails meanwhile"
    )
    if same_rate:
        print(
            f"  = {rate / same_rate:.2f} of the raw pooled rate for these same invitations "
            f"(target >= 0.40): {same_rate:.0f}/s, the flow's {len(same)} invitations (the bytes "
            f"it sent, {statistics.mean(len(m) for _, m in same) / 1000:.1f} kB on average) "
            f"sent again by raw aiosmtplib over {args.pool} pooled connections to the same sink"
        )
    print(
        f"  = {rate / ceiling_rate:.2f} of the ceiling measured above ({ceiling_rate:.0f}/s, with "
        f"the benchmark's own {len(invitation(0, 'size')[1]) / 1000:.1f} kB invitation)"
    )
    print("  where the time goes (seconds after matching.requested, first .. last):")
    for subject in WATCH:
        times = seen[subject]
        if times:
            print(
                f"    {subject.removeprefix('mentorship.'):24s} {len(times):6d} "
                f"{min(times) - started:7.1f} .. {max(times) - started:7.1f}"
            )
    if invites:
        print(
            f"    {'invitation in the sink':24s} {len(invites):6d} "
            f"{min(invites) - wall:7.1f} .. {last:7.1f}"
        )
    if args.timeline and cpu_samples:
        _print_timeline(cpu_samples, seen, started, [at - wall for at in invites])
    return rate / same_rate if same_rate else None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.email", description=__doc__)
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument(
        "--timeline", action="store_true", help="the whole flow second by second (CPU, events)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--security", choices=("plain", "starttls", "both"), default="both", help="the senders"
    )
    parser.add_argument(
        "--cohort", type=int, default=2000, help="people in the whole flow; 0 skips"
    )
    parser.add_argument(
        "--service-cohort",
        type=int,
        default=1000,
        help="people for notifications alone (and the reschedule latency); 0 skips",
    )
    parser.add_argument(
        "--flow-rounds",
        type=int,
        default=1,
        help="whole flows, each on fresh services and databases; their median is the figure "
        "(this machine's speed drifts by a third within minutes)",
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL; default SQLite")
    args = parser.parse_args()
    args.admin_url = args.database_url
    if args.database_url:  # a new database for this run: a round's people were paired before
        from bench.throughput import drop_created, fresh_postgres

        args.database_url = asyncio.run(fresh_postgres(args.database_url))
    try:
        run(args)
    finally:
        if args.database_url:
            asyncio.run(drop_created())


def run(args: argparse.Namespace) -> None:
    """The senders, notifications alone and the whole flow, as the arguments ask."""
    with tempfile.TemporaryDirectory(prefix="bench-email-") as tmp:
        folder = Path(tmp)
        ceiling_rate = 0.0
        if args.security in ("starttls", "both"):
            asyncio.run(senders(args, folder, tls=True))
        if args.security in ("plain", "both"):
            ceiling_rate = asyncio.run(senders(args, folder, tls=False))
        if not ceiling_rate:  # the end to end runs talk plain SMTP to the sink
            ceiling_rate = asyncio.run(senders(args, folder, tls=False))
        if args.service_cohort:
            asyncio.run(service_end_to_end(args, folder, ceiling_rate))
        ratios = []
        for flow in range(args.cohort and args.flow_rounds):
            if flow and args.admin_url:  # each flow pairs a new cohort: a new database
                from bench.throughput import fresh_postgres

                args.database_url = asyncio.run(fresh_postgres(args.admin_url))
            if args.flow_rounds > 1:
                print(f"\nwhole flow {flow + 1} of {args.flow_rounds}:")
            (folder / f"flow{flow}").mkdir()
            ratios.append(asyncio.run(pipeline(args, folder / f"flow{flow}", ceiling_rate)))
        measured = [r for r in ratios if r is not None]
        if len(ratios) > 1 and measured:
            print(
                f"\nwhole flow, {len(ratios)} rounds: shares of the raw pooled rate for the same "
                f"invitations {', '.join(f'{r:.2f}' for r in measured)}; median "
                f"{statistics.median(measured):.2f} (target >= 0.40)"
            )


if __name__ == "__main__":
    main()
