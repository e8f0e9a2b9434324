"""The whole system as processes: raw nats-py in; parsed emails in the SMTP sink, overview out."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import secrets
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import icalendar
import nats
import pytest

from cli.demo import is_invitation
from cli.launcher import System, free_port
from shared.bus import STREAM
from shared.deadletters import list_dead_letters
from shared.settings import SERVICES, Settings
from tests.support.factories import envelope, headers_for
from tests.support.waiting import bodies_on, subject_counts

COHORT = json.loads((Path(__file__).parents[2] / "cli" / "data" / "cohort.json").read_text())
PROGRAM = "e2e-program"

pytestmark = pytest.mark.e2e


def _system(tmp_path: Path, database_url: str | None) -> System:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        nats_port=free_port(),
        smtp_port=free_port(),
        pairing_http_port=free_port(),
        scheduling_http_port=free_port(),
        notifications_http_port=free_port(),
        insights_http_port=free_port(),
        max_deliver=6,
        retry_base_seconds=0.5,
        trace_file=tmp_path / "traces" / "{service}.jsonl",
    )
    return System(settings, say=lambda line: print(line))


async def _publish_cohort(url: str, *, traceparent: str) -> None:
    """The outside systems: an HR tool registering people, a coordinator asking for matching."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    for person in COHORT["participants"]:
        body = envelope(PROGRAM, **person)
        subject = "mentorship.participant.registered"
        await js.publish(
            subject, json.dumps(body).encode(), headers=headers_for(body, subject), timeout=5
        )
    body = envelope(PROGRAM, round_id="round-1")
    subject = "mentorship.matching.requested"
    await js.publish(
        subject,
        json.dumps(body).encode(),
        headers=headers_for(body, subject, traceparent=traceparent),
        timeout=5,
    )
    await nc.drain()


async def _stream_facts(url: str) -> dict[str, Any]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        counts = await subject_counts(js)
        completed = await bodies_on(js, "mentorship.matching.completed")
        ids_by_subject = {
            s: [b["event_id"] for b in await bodies_on(js, s)]
            for s in counts
            if not s.startswith("mentorship.dlq.")
        }
        sent = await bodies_on(js, "mentorship.notification.sent")
    finally:
        await nc.drain()
    # invitations to planned sessions; pair.formed mails (held by quiet hours, depending on the
    # hour the test runs) and other notices are not counted
    invitations = sum(1 for b in sent if is_invitation(b["kind"]))
    return {
        "counts": counts,
        "completed": completed,
        "ids": ids_by_subject,
        "invitations_sent": invitations,
    }


def _invitation_files(mail_dir: Path) -> list[Path]:
    """The mails that carry a calendar REQUEST (invitations), not the other notices."""
    return [p for p in sorted(mail_dir.glob("*.eml")) if b"method=REQUEST" in p.read_bytes()]


def _wait_for_mail(system: System, *, expected: int | None, timeout: float = 120) -> list[Any]:
    deadline = time.monotonic() + timeout
    facts: dict[str, Any] = {}
    while True:
        try:
            facts = asyncio.run(_stream_facts(system.nats_url))
        except Exception as exc:  # e.g. JetStream still recovering right after a restart
            print(f"reading the stream failed ({exc!r}); retrying")
            time.sleep(0.5)
            continue
        if facts["completed"]:
            # a kickoff and a series per pair, each one email per attendee
            scheduled = facts["counts"].get("mentorship.session.scheduled", 0)
            expected = 2 * max(scheduled, facts["completed"][0]["pairs_formed"])
            mails = _invitation_files(system.mail_dir)
            sent = facts["invitations_sent"]
            if len(mails) >= expected and sent >= expected and _quiescent(system):
                # nothing is in flight any more: a duplicate would already be here
                return [
                    email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                    for p in _invitation_files(system.mail_dir)
                ]
        if time.monotonic() > deadline:
            logs = "\n".join(
                p.read_text()[-3000:] for p in (system.data_dir / "logs").glob("*.log")
            )
            raise AssertionError(f"timed out waiting for {expected} emails; facts={facts}\n{logs}")
        time.sleep(0.5)


def _quiescent(system: System) -> bool:
    """Every durable consumer drained and every service's outbox empty."""

    async def consumers_drained() -> bool:
        nc = await nats.connect(system.nats_url)
        try:
            infos = await nc.jetstream().consumers_info(STREAM)
        finally:
            await nc.drain()
        return all(not c.num_pending and not c.num_ack_pending for c in infos)

    # insights shows readiness's counters only to a holder of a token
    headers = {"Authorization": f"Bearer {_token(system, PROGRAM)}"}
    for service in SERVICES:
        ready = httpx.get(f"{system.http_url(service)}/readyz", headers=headers, timeout=5).json()
        if ready.get("outbox_pending") != 0:
            return False
    return asyncio.run(consumers_drained())


def _token(system: System, program: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "token", "create", "--program", program],
        env=system.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def _check_invitations(mails: list[Any], pairs: int, sessions: int) -> None:
    assert len(mails) == 2 * sessions
    assert len({m["Message-ID"] for m in mails}) == len(mails)
    people = {p["email"]: p for p in COHORT["participants"]}
    per_session: Counter[str] = Counter()
    for msg in mails:
        assert msg.get_content_type() == "multipart/mixed"
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["Date"]
        recipient = msg["To"].addresses[0].addr_spec
        assert recipient in people
        alternative, attachment = list(msg.iter_parts())
        kinds = [part.get_content_type() for part in alternative.iter_parts()]
        assert kinds == ["text/plain", "text/html", "text/calendar"]
        calendar_part = list(alternative.iter_parts())[2]
        assert calendar_part.get_param("method") == "REQUEST"
        assert attachment.get_filename() == "invite.ics"
        cal = icalendar.Calendar.from_ical(attachment.get_content())
        assert str(cal["METHOD"]) == "REQUEST"
        # a series may carry overrides (RECURRENCE-ID) beside its master event
        [event] = [e for e in cal.walk("VEVENT") if "RECURRENCE-ID" not in e]
        attendees = {str(a).removeprefix("mailto:") for a in event.get("ATTENDEE")}
        assert recipient in attendees and len(attendees) == 2
        assert cal.walk("VTIMEZONE"), "the invitation carries its time zone"
        per_session[str(event["UID"])] += 1
        assert (
            people[recipient]["display_name"].split()[0] in msg.get_body(("plain",)).get_content()
        )
    assert set(per_session.values()) == {2}, "one email per attendee per session"
    assert len(per_session) == sessions
    assert len(per_session) >= pairs, "every pair has at least its kickoff"


def _check_overview(system: System, pairs: int) -> None:
    token = _token(system, PROGRAM)
    url = f"{system.http_url('insights')}/programs/{PROGRAM}/overview"
    assert httpx.get(url).status_code == 401
    other = _token(system, "another-program")
    assert httpx.get(url, headers={"Authorization": f"Bearer {other}"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": "Bearer mtk_wrong"}).status_code == 401
    sent = asyncio.run(_stream_facts(system.nats_url))["counts"]["mentorship.notification.sent"]
    deadline = time.monotonic() + 30
    while True:
        overview = httpx.get(url, headers={"Authorization": f"Bearer {token}"}).json()
        if overview["emails"].get("sent") == sent or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert overview["emails"]["sent"] == sent
    assert overview["matching_rounds"] == 1
    assert overview["mentees_matched"] == pairs
    assert sum(overview["participants"].values()) == len(COHORT["participants"])


def _check_nothing_doubled(system: System, pairs: int, sessions: int) -> None:
    facts = asyncio.run(_stream_facts(system.nats_url))
    for subject, ids in facts["ids"].items():
        assert len(ids) == len(set(ids)), f"duplicate events on {subject}"
    counts = facts["counts"]
    assert counts["mentorship.pair.formed"] == pairs
    assert counts["mentorship.session.scheduled"] == sessions
    assert pairs <= sessions <= 2 * pairs, "a kickoff, then a series, per pair"
    assert facts["invitations_sent"] == 2 * sessions
    every_mail = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Message-ID"]
        for p in system.mail_dir.glob("*.eml")
    ]
    assert len(every_mail) == len(set(every_mail)), "no email of any kind arrived twice"
    parked = [s for s in counts if s.startswith("mentorship.dlq.")]
    assert not parked, asyncio.run(_dead_letter_reasons(system.nats_url))


async def _dead_letter_reasons(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        return [
            f"{p.service} {p.original_subject}: {p.reason}"
            for p in await list_dead_letters(nc.jetstream())
        ]
    finally:
        await nc.drain()


def _spans(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in folder.glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]


def test_thin_path_from_raw_nats_to_email_and_overview(tmp_path: Path, database_url: str | None):
    system = _system(tmp_path, database_url)
    trace_id = secrets.token_hex(16)
    with system.running():
        asyncio.run(
            _publish_cohort(system.nats_url, traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01")
        )
        mails = _wait_for_mail(system, expected=None)
        facts = asyncio.run(_stream_facts(system.nats_url))
        pairs = facts["completed"][0]["pairs_formed"]
        sessions = facts["counts"]["mentorship.session.scheduled"]
        assert pairs >= 10
        _check_invitations(mails, pairs, sessions)
        _check_overview(system, pairs)
        _check_nothing_doubled(system, pairs, sessions)
        time.sleep(1.0)
    in_trace = [
        s for s in _spans(tmp_path / "traces") if s["context"]["trace_id"] == f"0x{trace_id}"
    ]
    services = {s["resource"]["attributes"]["service.name"] for s in in_trace}
    names = {s["name"] for s in in_trace}
    assert services == {
        f"mentorship-{n}" for n in ("pairing", "scheduling", "notifications", "insights")
    }
    assert "smtp send" in names
    assert {
        "mentorship.matching.requested process",
        "mentorship.pair.formed publish",
        "mentorship.session.scheduled process",
    } <= names


def test_nats_restart_mid_flight_loses_and_doubles_nothing(
    tmp_path: Path, database_url: str | None
):
    system = _system(tmp_path, database_url)
    with system.running():
        asyncio.run(
            _publish_cohort(
                system.nats_url, traceparent=f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
            )
        )
        # first outage: right away, while registrations and matching are being consumed
        caught_before_restart = len(list(system.mail_dir.glob("*.eml")))
        system.restart_nats(down_seconds=2.0)
        # second outage: once pairs flow, while relays publish and sessions are planned
        _wait_until(
            lambda: (
                asyncio.run(_stream_facts(system.nats_url))["counts"].get(
                    "mentorship.pair.formed", 0
                )
                > 0
            ),
            what="the first pairs",
        )
        system.restart_nats(down_seconds=2.0)
        mails = _wait_for_mail(system, expected=None, timeout=180)
        facts = asyncio.run(_stream_facts(system.nats_url))
        pairs = facts["completed"][0]["pairs_formed"]
        sessions = facts["counts"]["mentorship.session.scheduled"]
        assert caught_before_restart < 2 * pairs, "the first restart must land mid-flight"
        _check_invitations(mails, pairs, sessions)
        _check_nothing_doubled(system, pairs, sessions)
        _check_overview(system, pairs)


def test_killed_service_resumes_where_it_stopped(tmp_path: Path):
    system = _system(tmp_path, None)
    with system.running():
        system.stop_service("notifications", kill=True)
        asyncio.run(
            _publish_cohort(
                system.nats_url, traceparent=f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
            )
        )
        _wait_until(
            lambda: (
                asyncio.run(_stream_facts(system.nats_url))["counts"].get(
                    "mentorship.session.scheduled", 0
                )
                > 5
            ),
            what="sessions while notifications is down",
        )
        system.start_service("notifications")
        system.wait_ready("notifications")
        mails = _wait_for_mail(system, expected=None, timeout=180)
        facts = asyncio.run(_stream_facts(system.nats_url))
        pairs = facts["completed"][0]["pairs_formed"]
        sessions = facts["counts"]["mentorship.session.scheduled"]
        _check_invitations(mails, pairs, sessions)
        _check_nothing_doubled(system, pairs, sessions)


def _wait_until(check: Any, *, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception as exc:  # NATS just restarted: ask again
            print(f"check failed ({exc!r}); retrying")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
