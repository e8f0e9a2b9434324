"""insights' wiring: it consumes every event, serves the coordinators' API and dashboard."""

from __future__ import annotations

from services.insights import api, grants, store, web
from services.insights.handlers import PAIR_FACTS, SUBSCRIPTIONS, on_contact_deadline
from services.insights.tokens import parse_configured
from services.insights.writes import CONTACT_TIMER
from shared.events import PairAtRisk
from shared.service import Running, ServiceDefinition
from shared.timers import TimerHandler, timer_loop


async def store_configured_tokens(running: Running) -> None:
    """Registers the tokens of MENTORSHIP_INSIGHTS_API_TOKENS (digests only); a short token or
    one listed for two programs stops insights with what to fix."""
    secret = running.settings.insights_api_tokens
    configured = parse_configured(secret.get_secret_value()) if secret else {}
    async with running.sessions() as session, session.begin():
        await grants.store_configured(session, configured, now=running.clock.now())


def definition() -> ServiceDefinition:
    """insights as the service runner sees it."""
    return ServiceDefinition(
        name="insights",
        description="Projects every event into read models and serves the coordinators' API.",
        metadata=store.Base.metadata,
        tables=store.delivery,
        subscriptions=SUBSCRIPTIONS,
        emits=[PairAtRisk],
        routers=[api.router],
        loops=[
            timer_loop(
                store.timers,
                {CONTACT_TIMER: TimerHandler(done=on_contact_deadline, after=PAIR_FACTS)},
            )
        ],
        on_start=[store_configured_tokens],
        http_setup=[web.setup],
    )
