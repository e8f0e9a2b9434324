"""pairing's wiring: what it consumes, what it emits."""

from __future__ import annotations

from services.pairing import store
from services.pairing.handlers import SUBSCRIPTIONS
from shared.events import MatchingCompleted, PairFormed
from shared.service import ServiceDefinition


def definition() -> ServiceDefinition:
    """pairing as the service runner sees it."""
    return ServiceDefinition(
        name="pairing",
        description="Keeps matching profiles, runs matching rounds and forms pairs.",
        metadata=store.Base.metadata,
        tables=store.delivery,
        subscriptions=SUBSCRIPTIONS,
        emits=[PairFormed, MatchingCompleted],
    )
