"""Equity views: outcomes per demographic group, with small groups suppressed.

Only demographics participants consented to share reach insights (participant.registered's
`demographics`). A group of fewer than MIN_GROUP people is never shown, and neither is a group
whose size could be worked out from what is shown: the difference between a cohort's view and
the whole program's, or the one suppressed group of an attribute whose total is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

MIN_GROUP = 5

# the metrics an equity row carries per group, besides the number of people
OPPORTUNITY_KINDS = ("stretch", "sponsorship", "introduction")


class GroupFigures(BaseModel):
    """One group's figures, or only `suppressed` when it is too small to show."""

    model_config = ConfigDict(frozen=True)

    attribute: str
    group: str
    suppressed: bool
    people: int | None = None
    opportunities_per_capita: dict[str, float] | None = None
    match_quality: float | None = None
    session_adherence: float | None = None
    flags: list[str] = []


@dataclass(frozen=True)
class GroupTotals:
    """The raw sums of one group, as projected."""

    people: int
    opportunities: Mapping[str, int]
    matched: int = 0
    match_score_sum: float = 0.0
    sessions_held: int = 0
    sessions_missed: int = 0

    @property
    def match_quality(self) -> float | None:
        return round(self.match_score_sum / self.matched, 3) if self.matched else None

    @property
    def session_adherence(self) -> float | None:
        past = self.sessions_held + self.sessions_missed
        return round(self.sessions_held / past, 3) if past else None


def shown_groups(sizes: Mapping[str, int], whole: Mapping[str, int] | None = None) -> set[str]:
    """The groups of one attribute that may be shown.

    `whole` is the unfiltered program's sizes when `sizes` are a cohort's: a group is shown only
    if the rest of the program's group (whole - cohort) is empty or also large enough.
    """
    shown = {
        group
        for group, n in sizes.items()
        if n >= MIN_GROUP
        and (whole is None or (rest := whole.get(group, n) - n) == 0 or rest >= MIN_GROUP)
    }
    hidden = sorted((n, group) for group, n in sizes.items() if group not in shown and n > 0)
    if len(hidden) == 1 and shown:
        # the total is known, so one hidden group is the total minus the rest: hide another
        smallest = min(shown, key=lambda group: (sizes[group], group))
        shown.discard(smallest)
    return shown


def figures(
    attribute: str,
    totals: Mapping[str, GroupTotals],
    *,
    whole: Mapping[str, int] | None = None,
    gap_threshold: float = 0.2,
) -> list[GroupFigures]:
    """Each group's figures, small ones suppressed, gaps beyond the threshold flagged."""
    shown = shown_groups({group: t.people for group, t in totals.items()}, whole)
    rows: list[GroupFigures] = []
    per_capita = {
        group: {
            kind: round(t.opportunities.get(kind, 0) / t.people, 3) for kind in OPPORTUNITY_KINDS
        }
        for group, t in totals.items()
        if group in shown
    }
    best = {
        kind: max((pc[kind] for pc in per_capita.values()), default=0.0)
        for kind in OPPORTUNITY_KINDS
    }
    adherence = [a for g in shown if (a := totals[g].session_adherence) is not None]
    quality = [q for g in shown if (q := totals[g].match_quality) is not None]
    for group in sorted(totals):
        t = totals[group]
        if group not in shown:
            rows.append(GroupFigures(attribute=attribute, group=group, suppressed=True))
            continue
        flags = [
            f"{kind} opportunities {per_capita[group][kind]:.2f} per person vs "
            f"{best[kind]:.2f} in the best-served group"
            for kind in OPPORTUNITY_KINDS
            if best[kind] > 0
            and (best[kind] - per_capita[group][kind]) / best[kind] > gap_threshold
        ]
        if (
            t.session_adherence is not None
            and adherence
            and (max(adherence) - t.session_adherence > gap_threshold)
        ):
            flags.append(f"session adherence {t.session_adherence:.2f} vs {max(adherence):.2f}")
        if (
            t.match_quality is not None
            and quality
            and max(quality) > 0
            and ((max(quality) - t.match_quality) / max(quality) > gap_threshold)
        ):
            flags.append(f"match quality {t.match_quality:.2f} vs {max(quality):.2f}")
        rows.append(
            GroupFigures(
                attribute=attribute,
                group=group,
                suppressed=False,
                people=t.people,
                opportunities_per_capita=per_capita[group],
                match_quality=t.match_quality,
                session_adherence=t.session_adherence,
                flags=flags,
            )
        )
    return rows


def opportunity_kind(kind: str) -> str:
    """The equity bucket of an opportunity.offered kind ('stretch assignment' -> 'stretch')."""
    lowered = kind.lower()
    for bucket in OPPORTUNITY_KINDS:
        if lowered.startswith(bucket[:5]):
            return bucket
    return "other"
