"""The kinds of session a pair has: how long each lasts by default and what it is for."""

from __future__ import annotations

from dataclasses import dataclass

from services.scheduling.series import Cadence
from shared.events import SessionKind


@dataclass(frozen=True)
class KindProfile:
    """What a session of one kind is: its default length, its title and its agenda prompt."""

    kind: SessionKind
    minutes: int
    title: str
    agenda: str


PROFILES: dict[SessionKind, KindProfile] = {
    p.kind: p
    for p in (
        KindProfile(
            SessionKind.KICKOFF,
            60,
            "Mentorship kickoff",
            "Get to know each other, share what you hope to get out of the program, and agree "
            "how and how often you will meet.",
        ),
        KindProfile(
            SessionKind.REGULAR,
            45,
            "Mentorship one-to-one",
            "What went well since last time? What is in your way? What will you try before the "
            "next session?",
        ),
        KindProfile(
            SessionKind.FEEDBACK_MOMENT,
            30,
            "Feedback moment",
            "A milestone was reached: what made it work, what would you do differently, and "
            "what is the next milestone?",
        ),
        KindProfile(
            SessionKind.COFFEE_CHAT,
            30,
            "Coffee chat",
            "No agenda: an informal chat about work, careers, or anything else.",
        ),
        KindProfile(
            SessionKind.SHADOWING,
            90,
            "Shadow session",
            "The mentee joins the mentor's work for a while; keep notes of questions to discuss "
            "afterwards.",
        ),
        KindProfile(
            SessionKind.QUARTERLY_REFLECTION,
            60,
            "Quarterly reflection",
            "Look back on the quarter's goals: what was achieved, what changed, and which goals "
            "to keep, drop or add.",
        ),
    )
}


def profile(kind: SessionKind) -> KindProfile:
    """The defaults of one kind of session."""
    return PROFILES[kind]


# kinds planned as their own series beside the regular one-to-ones, when a program asks for
# them (MENTORSHIP_SESSION_RHYTHMS); each starts this many days after the kickoff
RHYTHMS: dict[SessionKind, tuple[Cadence, int]] = {
    SessionKind.COFFEE_CHAT: (Cadence.MONTHLY, 14),
    SessionKind.QUARTERLY_REFLECTION: (Cadence.QUARTERLY, 90),
}


def rhythms(setting: str) -> list[SessionKind]:
    """The extra series a setting names ('coffee_chat,quarterly_reflection'), in that order.

    Raises ValueError naming the kinds that can be, for anything else.
    """
    chosen = []
    for name in (n.strip() for n in setting.split(",")):
        if not name:
            continue
        kind = next((k for k in RHYTHMS if k.value == name), None)
        if kind is None:
            known = ", ".join(k.value for k in RHYTHMS)
            raise ValueError(f"{name!r} is not a session rhythm; use one of: {known}")
        if kind not in chosen:
            chosen.append(kind)
    return chosen


def is_shadowing(opportunity_kind: str) -> bool:
    """Whether an opportunity.offered kind asks for a shadow session ('shadowing', 'Shadow day')."""
    return opportunity_kind.strip().lower().startswith("shadow")
