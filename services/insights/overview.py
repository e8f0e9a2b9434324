"""A program's overview, as coordinators read it."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict


class Overview(BaseModel):
    """How a program is doing, in numbers."""

    model_config = ConfigDict(frozen=True)

    program_id: str
    mentors: int
    mentees: int
    timezones: int
    pairs_formed: int
    unmatched_mentees: int
    sessions_scheduled: int
    emails_sent: int
    emails_failed: int
    mentees_paired_share: float
    events_seen: dict[str, int]


def build_overview(
    program_id: str, counts: Mapping[str, int], events_seen: Mapping[str, int]
) -> Overview:
    """Combines the projected counts into the overview."""
    mentees = counts["mentees"]
    return Overview(
        program_id=program_id,
        mentors=counts["mentors"],
        mentees=mentees,
        timezones=counts["timezones"],
        pairs_formed=counts["pairs_formed"],
        unmatched_mentees=counts["unmatched_mentees"],
        sessions_scheduled=counts["sessions_scheduled"],
        emails_sent=counts["emails_sent"],
        emails_failed=counts["emails_failed"],
        mentees_paired_share=round(counts["pairs_formed"] / mentees, 3) if mentees else 0.0,
        events_seen=dict(sorted(events_seen.items())),
    )
