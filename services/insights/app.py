"""insights' wiring: it consumes every event and serves the coordinators' API."""

from __future__ import annotations

from services.insights import api, store
from services.insights.handlers import SUBSCRIPTIONS
from services.insights.tokens import parse_configured, token_digest
from shared.service import Running, ServiceDefinition


async def store_configured_tokens(running: Running) -> None:
    """Registers the tokens given by MENTORSHIP_INSIGHTS_API_TOKENS (digests only)."""
    secret = running.settings.insights_api_tokens
    if secret is None:
        return
    configured = parse_configured(secret.get_secret_value())
    async with running.sessions() as session, session.begin():
        for token, program_id in configured.items():
            await store.ensure_token(
                session,
                token_hash=token_digest(token),
                program_id=program_id,
                label="configured",
                created_at=running.clock.now(),
            )


def definition() -> ServiceDefinition:
    """insights as the service runner sees it."""
    return ServiceDefinition(
        name="insights",
        description="Projects every event into read models and serves the coordinators' API.",
        metadata=store.Base.metadata,
        tables=store.delivery,
        subscriptions=SUBSCRIPTIONS,
        emits=[],
        routers=[api.router],
        on_start=[store_configured_tokens],
    )
