"""pairing's wiring: what it consumes, what it emits, its HTTP and its timers."""

from __future__ import annotations

from services.pairing import api, consent, store
from services.pairing.handlers import SUBSCRIPTIONS
from shared.events import (
    MatchingCompleted,
    MatchingRequested,
    PairAccepted,
    PairDeclined,
    PairEnded,
    PairFormed,
    PairProposed,
)
from shared.events.pairs import PairExpired
from shared.service import ServiceDefinition
from shared.timers import timer_loop


def definition() -> ServiceDefinition:
    """pairing as the service runner sees it."""
    return ServiceDefinition(
        name="pairing",
        description=(
            "Keeps matching profiles, runs matching rounds, proposes pairs and forms them once "
            "both people accept (when the program asks for consent)."
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
            MatchingCompleted,
        ],
        routers=[api.router, api.coordination],
        loops=[timer_loop(store.timers, consent.TIMERS)],
    )
