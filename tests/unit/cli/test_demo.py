"""What the demo reports as its own: this run's emails only, and what it still waits for."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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


def _overview(rounds: int = 1, emails_sent: int = 4) -> dict[str, object]:
    return {"matching_rounds": rounds, "emails": {"sent": emails_sent}}


def _seen(pairs: int = 2, planned: int = 2, sent: int = 4) -> dict[str, list[Any]]:
    """Two pairs; each planned session has two attendees."""
    return {
        "pairs": [SimpleNamespace(pair_id=f"p{i}") for i in range(pairs)],
        "sessions": [
            SimpleNamespace(pair_id=f"p{i}", attendee_ids=["mentor", "mentee"])
            for i in range(planned)
        ],
        "sent": [SimpleNamespace(kind="session.kickoff")] * sent
        + [SimpleNamespace(kind="pair.formed")] * 2,  # notices are no invitations
    }


def test_the_demo_says_what_it_still_waits_for():
    assert _awaited(_overview(rounds=0), _seen()) == "the matching round"
    assert _awaited(_overview(), _seen(planned=1, sent=2)) == "kickoffs of 1 pairs"
    assert _awaited(_overview(), _seen(sent=1)) == "3 invitation emails"
    assert _awaited(_overview(emails_sent=5), _seen()) == "insights to count the last emails"
    assert _awaited(_overview(emails_sent=6), _seen()) == ""
