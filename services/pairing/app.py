"""pairing's wiring: what it consumes, what it emits, its HTTP and its timers."""

from __future__ import annotations

from services.pairing import api, consent, relationship_api, rules_api, store, warmup
from services.pairing.handlers import SUBSCRIPTIONS
from shared.events import (
    CharterAgreed,
    GoalReplanned,
    GoalSet,
    MatchingCompleted,
    MatchingRequested,
    PairAccepted,
    PairDeclined,
    PairEnded,
    PairFormed,
    PairProposed,
)
from shared.events.pairs import MenteeUnmatched, MilestoneReached, OpportunityOffered, PairExpired
from shared.service import ServiceDefinition
from shared.timers import timer_loop


def definition() -> ServiceDefinition:
    """pairing as the service runner sees it."""
    return ServiceDefinition(
        name="pairing",
        description=(
            "Keeps matching profiles, runs matching rounds, proposes pairs and forms them once "
            "both people accept (when the program asks for consent); keeps each pair's charter, "
            "goals, milestones and the opportunities offered."
        ),
        metadata=store.Base.metadata,
        tables=store.delivery,
        subscriptions=SUBSCRIPTIONS,
        emits=[
            MatchingRequested,
            PairProposed,
            PairAccepted,
            PairDeclined,
            PairExpired,
            PairFormed,
            PairEnded,
            MenteeUnmatched,
            MatchingCompleted,
            CharterAgreed,
            GoalSet,
            GoalReplanned,
            MilestoneReached,
            OpportunityOffered,
        ],
        routers=[
            api.router,
            api.coordination,
            rules_api.coordination,
            relationship_api.links,
            relationship_api.coordination,
        ],
        loops=[timer_loop(store.timers, consent.TIMERS)],
        # the matcher's worker loads its compiled code when the service starts, not when the
        # first matching.requested waits for it (about half a second, or a compile when stale)
        cpu_warm_up=warmup.warm_up,
    )
