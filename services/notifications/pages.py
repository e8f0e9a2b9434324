"""What participants click in notifications' own mails: unsubscribe and preferences, and the
quarterly assessment survey (thin).

The unsubscribe URL is the one List-Unsubscribe names: a mail client POSTs
`List-Unsubscribe=One-Click` to it (RFC 8058) and the kind stops at once; a person who opens it
gets a page whose buttons POST (mail scanners prefetch GET links; a GET never changes anything):
unsubscribe from this kind, from every non-essential kind, or get them in a daily digest.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select, update

from services.notifications import deliveries, digests, preferences, store
from services.notifications.queueing import signer_for
from shared.events import AssessmentSubmitted
from shared.links import LinkExpired, LinkInvalid
from shared.service import Running
from shared.timers import cancel
from shared.unit_of_work import UnitOfWork

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body><main><h1>{title}</h1>{body}</main></body></html>"""

ONE_CLICK = "One-Click"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status)


def _running(request: Request) -> Running:
    running: Running | None = request.app.state.service.running
    if running is None:
        raise RuntimeError("notifications is starting; try again in a moment")
    return running


def _verify(request: Request, token: str, purpose: str) -> dict[str, Any] | HTMLResponse:
    running = _running(request)
    try:
        data = signer_for(running.settings).verify(token, purpose, running.clock.now())
    except (LinkInvalid, LinkExpired) as exc:
        return _page("This link cannot be used", f"<p>{html.escape(str(exc))}</p>", 400)
    if not isinstance(data.get("program_id"), str) or not isinstance(
        data.get("participant_id"), str
    ):
        return _page("This link cannot be used", "<p>Use the newest email you received.</p>", 400)
    return data


async def _form(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    try:
        return parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return {}


def _token(request: Request, form: dict[str, list[str]]) -> str:
    return (form.get("t") or [request.query_params.get("t", "")])[0]


async def unsubscribe(uow: UnitOfWork, *, program_id: str, participant_id: str, kind: str) -> int:
    """Records that a person refuses a non-essential kind (or preferences.ALL) from now on; mail
    of it already queued and not yet sent is withdrawn (recorded as unsubscribed), items held for
    a digest too. Returns how many queued mails were withdrawn."""
    now = uow.clock.now()
    uow.upsert(
        store.Unsubscription,
        {
            "program_id": program_id,
            "participant_id": participant_id,
            "kind": kind,
            "unsubscribed_at": now,
            "source": store.BY_PERSON,
        },
    )
    kinds = sorted(preferences.NON_ESSENTIAL) if kind == preferences.ALL else [kind]
    what = preferences.KIND_NAMES.get(kind, kind)
    reason = (
        f"not sent: the recipient unsubscribed from {what} ({now.isoformat(timespec='seconds')})"
    )
    pending = list(
        await uow.session.scalars(
            select(store.Delivery).where(
                store.Delivery.program_id == program_id,
                store.Delivery.recipient_id == participant_id,
                store.Delivery.kind.in_(kinds),
                store.Delivery.status == "pending",
            )
        )
    )
    withdrawn = 0
    for row in pending:  # a send in flight right now still goes; the others do not
        if await cancel(
            uow.session, store.timers, program_id=program_id, kind=deliveries.SEND,
            key=row.delivery_id,
        ):  # fmt: skip
            row.status, row.last_error = "unsubscribed", reason
            withdrawn += 1
    await uow.session.execute(
        update(store.HeldItem)
        .where(
            store.HeldItem.program_id == program_id,
            store.HeldItem.participant_id == participant_id,
            store.HeldItem.kind.in_(kinds),
            store.HeldItem.status == "held",
        )
        .values(status="unsubscribed")
    )
    return withdrawn


def _hours(chosen: int) -> str:
    """The digest hour picker: 00:00 to 23:00, the person's current hour selected."""
    return "".join(
        f'<option value="{h}"{" selected" if h == chosen else ""}>{h:02d}:00</option>'
        for h in range(24)
    )


async def unsubscribe_counters(running: Running) -> dict[str, int]:
    """The unsubscribes people chose, for /readyz: a rising count says mail nags."""
    async with running.sessions() as session:
        return await store.unsubscribe_counts(session)


def _buttons(token: str, kind: str, digest_hour: int) -> str:
    t = html.escape(token)
    what = html.escape(preferences.KIND_NAMES.get(kind, kind))
    everything = html.escape(preferences.KIND_NAMES[preferences.ALL])
    return (
        f'<form method="post"><input type="hidden" name="t" value="{t}">'
        f'<input type="hidden" name="List-Unsubscribe" value="{ONE_CLICK}">'
        f'<button type="submit">Unsubscribe from {what}</button></form>'
        f'<form method="post"><input type="hidden" name="t" value="{t}">'
        f'<input type="hidden" name="scope" value="all">'
        f'<button type="submit">Unsubscribe from {everything}</button></form>'
        f'<form method="post"><input type="hidden" name="t" value="{t}">'
        f'<input type="hidden" name="frequency" value="{preferences.DAILY}">'
        f'<label>At <select name="digest_hour">{_hours(digest_hour)}</select> your time '
        "(after quiet hours and weekends): </label>"
        '<button type="submit">Keep them, but once a day in one digest</button></form>'
        f'<form method="post"><input type="hidden" name="t" value="{t}">'
        f'<input type="hidden" name="frequency" value="{preferences.IMMEDIATE}">'
        '<button type="submit">Send them as they happen</button></form>'
        "<p>Invitations, session changes, reminders, proposals and check-ins always reach you: "
        "they are how the program runs.</p>"
    )


def router() -> APIRouter:
    """The unsubscribe and survey pages."""
    links = APIRouter(tags=["links"])

    @links.get(preferences.UNSUBSCRIBE.path, response_class=HTMLResponse)
    async def preferences_page(request: Request, t: str = "") -> HTMLResponse:
        """What this link can do: unsubscribe (this kind, or all optional mail) or a digest."""
        data = _verify(request, t, preferences.UNSUBSCRIBE.purpose)
        if isinstance(data, HTMLResponse):
            return data
        kind = str(data.get("kind") or preferences.ALL)
        running = _running(request)
        async with running.sessions() as session:
            chosen = await store.choices(
                session, program_id=data["program_id"], participant_ids=[data["participant_id"]]
            )
        choice = chosen.get(data["participant_id"])
        hour = running.settings.digest_hour
        if choice is not None and choice.digest_hour is not None:
            hour = choice.digest_hour
        return _page("Your email preferences", _buttons(t, kind, hour))

    @links.post(preferences.UNSUBSCRIBE.path, response_class=HTMLResponse)
    async def preferences_answer(request: Request) -> HTMLResponse:
        """One-click unsubscribe (RFC 8058: body List-Unsubscribe=One-Click), or a choice from
        the page: scope=all, or frequency=daily|immediate (with daily: digest_hour=0..23)."""
        form = await _form(request)
        data = _verify(request, _token(request, form), preferences.UNSUBSCRIBE.purpose)
        if isinstance(data, HTMLResponse):
            return data
        program_id, pid = data["program_id"], data["participant_id"]
        kind = str(data.get("kind") or preferences.ALL)
        if kind != preferences.ALL and preferences.is_essential(kind):
            return _page(
                "This link cannot be used",
                "<p>This kind of email cannot be turned off; ask your program coordinator.</p>",
                400,
            )
        frequency = (form.get("frequency") or [""])[0]
        scope = (form.get("scope") or [""])[0]
        one_click = (form.get("List-Unsubscribe") or [""])[0] == ONE_CLICK
        if frequency and frequency not in (preferences.DAILY, preferences.IMMEDIATE):
            return _page("Please check the form", "<p>Choose daily or immediate.</p>", 422)
        hour_given = (form.get("digest_hour") or [""])[0]
        digest_hour = preferences.parse_digest_hour(hour_given) if hour_given else None
        if hour_given and digest_hour is None:
            return _page("Please check the form", "<p>Choose an hour from 0 to 23.</p>", 422)
        if not (frequency or scope == "all" or one_click):
            return _page(
                "Please check the form",
                "<p>Nothing was chosen; open the link from your email and press a button.</p>",
                422,
            )
        running = _running(request)
        async with running.unit_of_work() as uow:
            if frequency:
                chosen: dict[str, Any] = {"frequency": frequency, "updated_at": uow.clock.now()}
                if digest_hour is not None:  # unset: the hour chosen before stays
                    chosen["digest_hour"] = digest_hour
                uow.upsert(
                    store.Preference, {"program_id": program_id, "participant_id": pid} | chosen
                )
                said = "You will get these emails as they happen."
                if frequency == preferences.DAILY:
                    at = "" if digest_hour is None else f", at {digest_hour:02d}:00 your time"
                    said = f"You will get these emails once a day, in one digest{at}."
            else:
                refused = preferences.ALL if scope == "all" else kind
                await unsubscribe(uow, program_id=program_id, participant_id=pid, kind=refused)
                said = (
                    f"You are unsubscribed from {preferences.KIND_NAMES.get(refused, refused)}. "
                    "Invitations and other emails about your sessions still reach you."
                )
        return _page("Done", f"<p>{html.escape(said)}</p>")

    @links.get(preferences.ASSESSMENT_FORM.path, response_class=HTMLResponse)
    async def assessment_page(request: Request, t: str = "") -> HTMLResponse:
        """The quarterly program assessment: four statements rated 1 to 5."""
        data = _verify(request, t, preferences.ASSESSMENT_FORM.purpose)
        if isinstance(data, HTMLResponse):
            return data
        rows = "".join(
            f"<fieldset><legend>{html.escape(text)}</legend>"
            + "".join(
                f'<label><input type="radio" name="{name}" value="{n}" required> {n}</label> '
                for n in range(1, 6)
            )
            + "</fieldset>"
            for name, text in digests.QUESTIONS
        )
        body = (
            f'<form method="post"><input type="hidden" name="t" value="{html.escape(t)}">'
            f"<p>1: not at all, 5: fully.</p>{rows}"
            '<button type="submit">Send my answers</button></form>'
        )
        return _page("The mentorship program: four questions", body)

    @links.post(preferences.ASSESSMENT_FORM.path, response_class=HTMLResponse)
    async def assessment_answer(request: Request) -> HTMLResponse:
        """assessment.submitted to insights (once per person and quarter)."""
        form = await _form(request)
        data = _verify(request, _token(request, form), preferences.ASSESSMENT_FORM.purpose)
        if isinstance(data, HTMLResponse):
            return data
        scores: dict[str, float] = {}
        for name, _ in digests.QUESTIONS:
            try:
                value = int((form.get(name) or ["0"])[0])
            except ValueError:
                value = 0
            if not 1 <= value <= 5:
                return _page(
                    "Please check the form", "<p>Rate each statement from 1 to 5.</p>", 422
                )
            scores[name] = float(value)
        program_id, pid, quarter = data["program_id"], data["participant_id"], data["quarter"]
        running = _running(request)
        async with running.unit_of_work() as uow:
            key = (program_id, pid, str(quarter))
            if await uow.session.get(store.AssessmentAnswer, key) is not None:
                return _page("Already received", "<p>Your answers for this quarter are in.</p>")
            now = uow.clock.now()
            uow.session.add(
                store.AssessmentAnswer(
                    program_id=program_id, participant_id=pid, quarter=str(quarter),
                    answered_at=now,
                )
            )  # fmt: skip
            uow.emit(
                AssessmentSubmitted(
                    program_id=program_id, occurred_at=now, participant_id=pid,
                    instrument=f"program-assessment-{quarter}", scores=scores,
                )
            )  # fmt: skip
        running.relay.wake()
        return _page("Thank you", "<p>Your answers were added to the program's picture.</p>")

    return links
