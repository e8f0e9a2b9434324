"""Which mail a person may refuse or fold into a digest, and when digests go (pure).

Essential mail (invitations, updates, cancellations, reminders, proposals, check-ins and their
escalation, missed sessions, matching results, alerts to coordinators) always goes at once (quiet
hours aside) and carries no unsubscribe link. Non-essential mail carries a one-click unsubscribe
link (RFC 8058); the low-urgency part of it waits for the person's daily digest when they chose
one, or when their daily cap of non-essential mail is reached.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from services.notifications.quiet import QuietHours
from shared.links import LinkKind

DIGEST = "notifications.digest"  # the kind (and timer kind) of a person's digest mail
WINS = "program.wins"  # the weekly wins digest of a program
ASSESSMENT = "program.assessment"  # the quarterly program assessment survey
TOUCHPOINT = "pair.touchpoint"  # a reflective prompt between sessions

# low-urgency: a person may have these folded into their daily digest
LOW_URGENCY = frozenset({"milestone.reached", "feedback.request", ASSESSMENT, TOUCHPOINT})
# non-essential: a person may unsubscribe from these (the digests themselves included)
NON_ESSENTIAL = LOW_URGENCY | {WINS, DIGEST}
ALL = "*"  # unsubscribed from every non-essential kind

IMMEDIATE, DAILY = "immediate", "daily"

KIND_NAMES = {
    "milestone.reached": "milestone celebrations",
    "feedback.request": "feedback requests",
    ASSESSMENT: "the quarterly program survey",
    TOUCHPOINT: "reflective prompts between sessions",
    WINS: "the program's weekly wins",
    DIGEST: "the daily digest",
    ALL: "every email that is not about your sessions, check-ins or pairing",
}


def is_essential(kind: str) -> bool:
    """Whether a kind always goes (and carries no unsubscribe link)."""
    return kind not in NON_ESSENTIAL


def may_hold(kind: str) -> bool:
    """Whether a kind may wait for the recipient's digest (by their choice or their cap)."""
    return kind in LOW_URGENCY


def unsubscribed_from(kind: str, refused: set[str]) -> bool:
    """Whether a person who refused these kinds (or ALL) refuses this one; never essential."""
    return not is_essential(kind) and (kind in refused or ALL in refused)


def _at_local(day: dt.date, hour: int, zone: ZoneInfo) -> dt.datetime:
    """`hour`:00 local on `day` (a wall time in a DST gap moves past the gap), in UTC."""
    local = dt.datetime.combine(day, dt.time(hour), tzinfo=zone)
    return local.astimezone(dt.UTC).astimezone(zone).astimezone(dt.UTC)


def next_digest(now: dt.datetime, timezone: str, hour: int, quiet: QuietHours) -> dt.datetime:
    """When the next digest after `now` goes (UTC): the next local `hour`:00 strictly after now,
    moved to the next allowed time when that falls in quiet hours or on a quiet weekend."""
    zone = ZoneInfo(timezone)
    day = now.astimezone(zone).date()
    for _ in range(3):
        candidate = _at_local(day, hour, zone)
        if candidate > now:
            return quiet.next_allowed(candidate, timezone)
        day += dt.timedelta(days=1)
    raise AssertionError("unreachable: a local hour recurs every day")


def parse_digest_hour(text: str) -> int | None:
    """A digest hour from a form ('7', '07'): 0 to 23, else None."""
    value = text.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 2:
        return None
    hour = int(value)
    return hour if 0 <= hour <= 23 else None


def digest_window(due: dt.datetime, timezone: str) -> str:
    """The digest a due time belongs to: its local date and time in the recipient's zone
    ('2027-03-29T09:00'); every item held for the same due time goes in the same digest."""
    return due.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%dT%H:%M")


def local_day(at: dt.datetime, timezone: str) -> str:
    """The recipient's local date of `at`: the day a frequency cap counts in."""
    return at.astimezone(ZoneInfo(timezone)).date().isoformat()


def over_cap(sent_today: int, cap: int) -> bool:
    """Whether one more non-essential mail today would exceed the cap (0: no cap)."""
    return cap > 0 and sent_today >= cap


# program-wide mail (weekly wins, the survey) goes at this local hour in each recipient's zone;
# its timer fires when that hour comes in the first zone to reach it (UTC+14), and each
# recipient's mail then waits for the hour in their own zone
PROGRAM_MAIL_HOUR = 9
_FIRST_ZONE = dt.timedelta(hours=14)


def first_local(day: dt.date, hour: int = PROGRAM_MAIL_HOUR) -> dt.datetime:
    """When `hour`:00 of `day` comes first anywhere (at UTC+14), in UTC: a program-wide timer."""
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC) - _FIRST_ZONE


def local_hour_on(day: dt.date, timezone: str, hour: int = PROGRAM_MAIL_HOUR) -> dt.datetime:
    """`hour`:00 of `day` in the recipient's zone (past a DST gap), in UTC."""
    return _at_local(day, hour, ZoneInfo(timezone))


def next_quarter(now: dt.datetime) -> tuple[str, dt.datetime]:
    """The next quarter's name ('2027Q2') and when its survey timer fires (`first_local` of the
    quarter's first day)."""
    quarter = (now.month - 1) // 3 + 1
    year, quarter = (now.year + 1, 1) if quarter == 4 else (now.year, quarter + 1)
    return f"{year}Q{quarter}", first_local(quarter_day(f"{year}Q{quarter}"))


def quarter_day(quarter: str) -> dt.date:
    """The first day of a quarter ('2027Q2' -> 2027-04-01)."""
    year, number = quarter.split("Q")
    return dt.date(int(year), 3 * (int(number) - 1) + 1, 1)


def quarter_of(at: dt.datetime) -> str:
    """The quarter `at` falls in ('2027Q1')."""
    return f"{at.year}Q{(at.month - 1) // 3 + 1}"


def wins_week(now: dt.datetime) -> tuple[str, dt.datetime]:
    """The weekly wins digest collecting what happens now: its ISO week ('2027-W13') and when its
    timer fires: the following Monday's 09:00 in the first zone (Sunday 19:00 UTC); each
    recipient's mail goes at 09:00 on that Monday in their own zone. What happens after the
    timer fired goes in the next week's."""
    shifted = now.astimezone(dt.UTC) + _FIRST_ZONE - dt.timedelta(hours=PROGRAM_MAIL_HOUR)
    year, week, _ = shifted.isocalendar()
    name = f"{year}-W{week:02d}"
    return name, first_local(wins_day(name))


def wins_day(week: str) -> dt.date:
    """The Monday a week's wins go out on ('2027-W09' -> 2027-03-08)."""
    year, number = week.split("-W")
    return dt.date.fromisocalendar(int(year), int(number), 1) + dt.timedelta(days=7)


# links notifications mails and answers itself (shared.links tokens, the deployment's secret)
UNSUBSCRIBE = LinkKind("notifications.unsubscribe", "notifications", "/links/unsubscribe")
"""data: program_id, participant_id, kind; POST one-click (RFC 8058) or the preferences page."""
ASSESSMENT_FORM = LinkKind("notifications.assessment", "notifications", "/links/assessment")
"""data: program_id, participant_id, quarter; the survey form, answers go to insights."""
UNSUBSCRIBE_LINK_DAYS = 400  # an unsubscribe link holds this long (RFC 8058: for a long time)
