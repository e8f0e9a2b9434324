"""notifications' wiring: what it consumes, what it emits, its sender loop."""

from __future__ import annotations

from services.notifications import digests, messages, pages, preferences, reminders, store
from services.notifications.handlers import SUBSCRIPTIONS, on_reminder_due
from services.notifications.replies import run_reply_receiver
from services.notifications.sender import run_sender
from shared.events import (
    AssessmentSubmitted,
    NotificationFailed,
    NotificationSent,
    SessionResponded,
)
from shared.service import ServiceDefinition
from shared.timers import TimerHandler, timer_loop

# timers other than sends (those are the sender's): a reminder queues its mails when due
TIMERS = {
    reminders.REMINDER: TimerHandler(done=on_reminder_due, retry_base_seconds=30.0),
    preferences.DIGEST: TimerHandler(done=digests.on_digest_due, retry_base_seconds=30.0),
    preferences.WINS: TimerHandler(done=digests.on_wins_due, retry_base_seconds=30.0),
    preferences.ASSESSMENT: TimerHandler(done=digests.on_assessment_due, retry_base_seconds=30.0),
    preferences.TOUCHPOINT: TimerHandler(done=digests.on_touchpoint_due, retry_base_seconds=30.0),
}


def definition() -> ServiceDefinition:
    """notifications as the service runner sees it."""
    return ServiceDefinition(
        name="notifications",
        description="Keeps contact data, queues deliveries and sends email over SMTP.",
        metadata=store.Base.metadata,
        tables=store.delivery_tables,
        subscriptions=SUBSCRIPTIONS,
        emits=[NotificationSent, NotificationFailed, SessionResponded, AssessmentSubmitted],
        routers=[pages.router],
        loops=[run_sender, timer_loop(store.timers, TIMERS), run_reply_receiver],
        counters=[pages.unsubscribe_counters],
        # the worker that composes a batch's mails (queueing.compose_queued) starts with the
        # service, not when a round's first mails wait for it
        cpu_warm_up=messages.warm_up,
    )
