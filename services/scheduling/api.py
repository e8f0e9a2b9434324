"""What participants click in scheduling's mails: "we met" and the check-in report (thin).

GET shows a page whose button POSTs the answer (mail scanners prefetch GET links; a GET never
changes anything). Tokens are shared.links tokens: SESSION_HELD and CHECKIN_REPORT.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from services.scheduling import checkins, feeds, followups, store
from services.scheduling.plans import Status
from shared.events import CheckinSubmitted, SessionHeld, SessionMissed
from shared.events.sessions import Roadblock
from shared.links import CHECKIN_REPORT, SESSION_HELD, LinkExpired, LinkInvalid, link_signer
from shared.service import Running

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body><main><h1>{title}</h1>{body}</main></body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status)


def _running(request: Request) -> Running:
    running: Running | None = request.app.state.service.running
    if running is None:
        raise RuntimeError("scheduling is starting; try again in a moment")
    return running


def _verify(request: Request, token: str, purpose: str) -> dict[str, Any] | HTMLResponse:
    running = _running(request)
    try:
        return link_signer(running.settings).verify(token, purpose, running.clock.now())
    except (LinkInvalid, LinkExpired) as exc:
        return _page("This link cannot be used", f"<p>{html.escape(str(exc))}</p>", 400)


async def _form(request: Request) -> dict[str, list[str]]:
    return parse_qs((await request.body()).decode(), keep_blank_values=True)


def _lines(raw: list[str]) -> list[str]:
    return [line.strip() for text in raw for line in text.splitlines() if line.strip()][:20]


def router() -> APIRouter:
    """The link pages."""
    links = APIRouter(tags=["links"])

    @links.get(SESSION_HELD.path, response_class=HTMLResponse)
    async def session_held_page(request: Request, t: str) -> HTMLResponse:
        """The "we met" form: who was there, how long, the key takeaways."""
        data = _verify(request, t, SESSION_HELD.purpose)
        if isinstance(data, HTMLResponse):
            return data
        running = _running(request)
        async with running.sessions() as session:
            row = await _occurrence(session, data, running.clock.now())
            if row is None:
                return _page("Unknown session", f"<p>{_NONE}</p>", 404)
            people = {
                p: await store.get_person(session, program_id=row.program_id, participant_id=p)
                for p in row.attendee_ids
            }
        boxes = "".join(
            f'<label><input type="checkbox" name="present" value="{html.escape(pid)}" checked> '
            f"{html.escape(person.display_name if person else pid)}</label><br>"
            for pid, person in people.items()
        )
        body = (
            f'<form method="post"><input type="hidden" name="t" value="{html.escape(t)}">'
            f"<fieldset><legend>Who was there?</legend>{boxes}</fieldset>"
            '<label>Minutes <input type="number" name="minutes" min="1" max="600" value="45">'
            "</label><br><label>Key takeaways (one a line)<br>"
            '<textarea name="takeaways" rows="5" cols="60"></textarea></label><br>'
            '<button type="submit">We met</button></form>'
        )
        return _page("Did your session happen?", body)

    @links.post(SESSION_HELD.path, response_class=HTMLResponse)
    async def session_held(request: Request) -> HTMLResponse:
        """Records the confirmation: session.held, or session.missed with who was not there."""
        form = await _form(request)
        data = _verify(request, (form.get("t") or [""])[0], SESSION_HELD.purpose)
        if isinstance(data, HTMLResponse):
            return data
        try:
            minutes = int((form.get("minutes") or ["0"])[0])
        except ValueError:
            minutes = 0
        if not 1 <= minutes <= 600:
            return _page("Please check the form", "<p>Give the minutes, 1 to 600.</p>", 422)
        running = _running(request)
        async with running.unit_of_work() as uow:
            outcome = await _confirm(
                uow, data, form.get("present", []), minutes, _lines(form.get("takeaways", []))
            )
        running.relay.wake()
        return _page("Thank you", f"<p>{html.escape(outcome)}</p>")

    @links.get(CHECKIN_REPORT.path, response_class=HTMLResponse)
    async def checkin_page(request: Request, t: str) -> HTMLResponse:
        """The check-in report form."""
        data = _verify(request, t, CHECKIN_REPORT.purpose)
        if isinstance(data, HTMLResponse):
            return data
        fields = "".join(
            f"<label>{label} (one a line)<br>"
            f'<textarea name="{name}" rows="4" cols="60"></textarea></label><br>'
            for name, label in (
                ("accomplishments", "What you accomplished"),
                ("roadblocks", "Roadblocks"),
                ("solutions", "Your proposed solution for each roadblock, in the same order"),
                ("next_steps", "Next steps"),
                ("mentor_commitments", "What your mentor committed to"),
            )
        )
        body = (
            f'<form method="post"><input type="hidden" name="t" value="{html.escape(t)}">{fields}'
            '<label>Progress (1-5) <input type="number" name="progress" min="1" max="5" '
            'value="3"></label><br><button type="submit">Send my check-in</button></form>'
        )
        return _page("Your check-in", body)

    @links.post(CHECKIN_REPORT.path, response_class=HTMLResponse)
    async def checkin_report(request: Request) -> HTMLResponse:
        """checkin.submitted from the form; escalation stops."""
        form = await _form(request)
        data = _verify(request, (form.get("t") or [""])[0], CHECKIN_REPORT.purpose)
        if isinstance(data, HTMLResponse):
            return data
        try:
            progress = int((form.get("progress") or ["0"])[0])
        except ValueError:
            progress = 0
        if not 1 <= progress <= 5:
            return _page("Please check the form", "<p>Give your progress, 1 to 5.</p>", 422)
        running = _running(request)
        async with running.unit_of_work() as uow:
            row = await store.get_checkin(
                uow.session, program_id=data["program_id"], checkin_id=data["checkin_id"]
            )
            if row is None:
                return _page("Unknown check-in", "<p>This check-in no longer exists.</p>", 404)
            if row.status != "due":
                return _page("Already received", "<p>This check-in was sent already.</p>")
            blocks = _lines(form.get("roadblocks", []))
            solutions = _lines(form.get("solutions", []))
            uow.emit(
                CheckinSubmitted(
                    program_id=row.program_id, occurred_at=uow.clock.now(),
                    checkin_id=row.checkin_id, pair_id=row.pair_id,
                    participant_id=data["participant_id"], progress=progress,
                    accomplishments=_lines(form.get("accomplishments", [])),
                    roadblocks=_roadblocks(blocks, solutions),
                    next_steps=_lines(form.get("next_steps", [])),
                    mentor_commitments=_lines(form.get("mentor_commitments", [])),
                )
            )  # fmt: skip
            await followups.record_submitted(uow, row)
        running.relay.wake()
        return _page("Thank you", "<p>Your check-in was sent to your mentor.</p>")

    @links.get(feeds.PATH, response_class=Response, tags=["feeds"])
    async def feed(request: Request, token: str) -> Response:
        """A person's ICS feed (subscribe once in any calendar app)."""
        running = _running(request)
        async with running.unit_of_work() as uow:
            found = await feeds.owner(uow.session, token)
            if found is None:
                return Response(
                    "This calendar feed does not exist or was revoked; ask your program "
                    "coordinator for a new link.\n",
                    status_code=404,
                    media_type="text/plain",
                )
            body = await feeds.calendar(uow, found)
        return Response(body, media_type="text/calendar; charset=utf-8")

    return links


def _roadblocks(blocks: list[str], solutions: list[str]) -> list[Roadblock]:
    """Each roadblock with the solution given on the same line number, if any."""
    padded = solutions + [""] * len(blocks)
    return [
        Roadblock(roadblock=b[:2000], proposed_solution=padded[i][:2000])
        for i, b in enumerate(blocks)
    ]


_NONE = "This session no longer exists, or none of its series has taken place yet."


async def _occurrence(session: Any, data: dict[str, Any], now: dt.datetime) -> store.Session | None:
    """The occurrence a signed link names: a session, or one occurrence of a series."""
    raw = data.get("recurrence_id")
    return await store.named_occurrence(
        session,
        program_id=data["program_id"],
        session_id=data["session_id"],
        recurrence_id=dt.datetime.fromisoformat(raw) if raw else None,
        now=now,
    )


async def _confirm(
    uow: Any, data: dict[str, Any], present: list[str], minutes: int, takeaways: list[str]
) -> str:
    row = await _occurrence(uow.session, data, uow.clock.now())
    if row is None:
        return f"{_NONE} Nothing was recorded."
    if row.status in (Status.HELD, Status.MISSED):
        return "This session was recorded already."
    reporter = data["participant_id"]
    seen = checkins.attendance(row.attendee_ids, [*present])
    now = uow.clock.now()
    if seen.held:
        event = SessionHeld(
            program_id=row.program_id, occurred_at=now, session_id=row.session_id,
            pair_id=row.pair_id, held_at=store.utc(row.start or now), duration_minutes=minutes,
            present_ids=list(seen.present), absent_ids=list(seen.absent),
            takeaways=[t[:2000] for t in takeaways], reported_by=reporter,
        )  # fmt: skip
        followups.record_held(uow, row, event)
        uow.emit(event)
        await followups.disarm_missed(uow, row)
        return "Thank you: your session is recorded as held."
    row.status = Status.MISSED.value
    row.attendance = {p: p in seen.present for p in row.attendee_ids}
    uow.emit(
        SessionMissed(
            program_id=row.program_id, occurred_at=now, session_id=row.session_id,
            pair_id=row.pair_id, no_show_ids=list(seen.absent), confirmed_ids=[reporter],
            reason=f"{reporter} reported who was there",
        )
    )  # fmt: skip
    await followups.disarm_missed(uow, row)
    return "Thank you: the session is recorded as missed by whoever was not there."
