"""What the demo reports as its own: this run's emails only, and what it still waits for."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

from cli.demo import PROGRAM_HEADER, _awaited, program_mails


def _mail(folder: Path, name: str, message_id: str, program: str | None = None) -> Path:
    msg = EmailMessage()
    msg["Subject"] = "Invitation: mentorship kickoff"
    msg["To"] = "grace.kim@example.org"
    msg["Message-ID"] = message_id
    if program:
        msg[PROGRAM_HEADER] = program
    msg.set_content("hello")
    path = folder / name
    path.write_bytes(bytes(msg))
    return path


def test_only_mails_of_this_program_count_even_to_the_same_people(tmp_path):
    ours = _mail(tmp_path, "2.eml", "<a@localhost>")
    _mail(tmp_path, "1.eml", "<earlier-run@localhost>")  # same recipient, an earlier demo
    tagged = _mail(tmp_path, "3.eml", "<c@localhost>", program="demo-2")
    _mail(tmp_path, "4.eml", "<a@localhost>", program="demo-1")  # the header wins
    found = program_mails(tmp_path, "demo-2", {"<a@localhost>"})
    assert found == [ours, tagged]


def _overview(**values: int) -> dict[str, object]:
    counts = {"pairs_formed": 2, "sessions_scheduled": 2, "emails_sent": 4} | values
    return {"events_seen": {"mentorship.matching.completed": 1}, **counts}


def test_the_demo_says_what_it_still_waits_for():
    assert _awaited(_overview() | {"events_seen": {}}, 0) == "the matching round"
    assert _awaited(_overview(sessions_scheduled=1), 0) == "kickoffs of 1 pairs"
    assert _awaited(_overview(emails_sent=1), 1) == "3 invitation emails"
    assert _awaited(_overview(), 3) == "the last notification.sent events"
    assert _awaited(_overview(), 4) == ""
