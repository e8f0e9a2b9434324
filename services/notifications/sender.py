"""The sender: each delivery's send is a durable timer item, done over one reused SMTP connection.

The item is claimed with a lease, the mail is sent outside any transaction, and the delivery is
marked sent (and notification.sent emitted) in the transaction that marks the item done; two
replicas never send the same delivery. A crash between the SMTP 250 and that commit resends the
mail once the lease ends, with the same Message-ID (the bytes are stored with the delivery).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiosmtplib
from opentelemetry import trace

from services.notifications import deliveries, store
from shared.db import Sessions
from shared.events import Channel, NotificationFailed, NotificationSent
from shared.settings import Settings
from shared.telemetry import context_from_traceparent, tracer
from shared.timers import Due, PermanentFailure, TimerHandler, timer_loop
from shared.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from shared.service import Running

log = logging.getLogger("mentorship.notifications.sender")

# these should become settings
MAX_ATTEMPTS = 8
RETRY_BASE_SECONDS = 5.0  # 5 s, 10 s, 20 s ... between attempts
RETRY_CAP_SECONDS = 1800.0
LEASE = dt.timedelta(minutes=2)  # far above smtp_timeout_seconds: a send never outlives it
BATCH = 50


class SmtpConnection:
    """One SMTP connection, opened on first use and reopened after the server drops it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: aiosmtplib.SMTP | None = None

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host or "127.0.0.1",
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            timeout=s.smtp_timeout_seconds,
        )

    async def send(self, *, sender: str, recipient: str, message: bytes) -> None:
        """Sends one message, reconnecting once if the pooled connection went stale."""
        for attempt in (1, 2):
            if self._client is None or not self._client.is_connected:
                self._client = self._new_client()
                await self._client.connect()
            try:
                await self._client.sendmail(sender, [recipient], message)
                return
            except aiosmtplib.SMTPServerDisconnected:
                self._client = None
                if attempt == 2:
                    raise

    async def close(self) -> None:
        """Says QUIT if connected."""
        if self._client is not None and self._client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await self._client.quit()
        self._client = None


# 5xx about the server, the connection or our own configuration, not about this message
_NOT_ABOUT_THE_MESSAGE = (
    aiosmtplib.SMTPAuthenticationError,
    aiosmtplib.SMTPConnectResponseError,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPSenderRefused,
)


def _permanent(exc: Exception) -> bool:
    """5xx answers about the recipient or the message will not change on retry."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= e.code < 600 for e in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 500 <= exc.code < 600 and not isinstance(exc, _NOT_ABOUT_THE_MESSAGE)
    return False


@dataclass(frozen=True)
class SendMail:
    """The send timer's side effect: one delivery's stored bytes over the SMTP connection."""

    sessions: Sessions
    smtp: SmtpConnection
    mail_from: str

    async def __call__(self, item: Due) -> None:
        """Sends the delivery's email; a 5xx about the message fails it for good."""
        # read, then let the connection go: SQLite's one connection is not held over SMTP
        async with self.sessions() as session:
            delivery = await store.delivery_or_raise(
                session, program_id=item.program_id, delivery_id=item.key
            )
        with tracer().start_as_current_span(
            "smtp send",
            context=context_from_traceparent(delivery.traceparent),
            kind=trace.SpanKind.CLIENT,
        ) as span:
            span.set_attribute("mentorship.delivery_id", delivery.delivery_id)
            span.set_attribute("email.message_id", delivery.message_id)
            try:
                await self.smtp.send(
                    sender=self.mail_from,
                    recipient=delivery.recipient_email,
                    message=delivery.message,
                )
            except Exception as exc:
                span.record_exception(exc)
                if _permanent(exc):
                    raise PermanentFailure(f"{type(exc).__name__}: {exc}") from exc
                raise


def _about(row: store.Delivery) -> dict[str, Any]:
    """What notification.sent and notification.failed both say about a delivery."""
    return {
        "program_id": row.program_id,
        "delivery_id": row.delivery_id,
        "recipient_id": row.recipient_id,
        "kind": row.kind,
        "channel": Channel.EMAIL,
        "source_event_id": row.source_event_id,
    }


async def mark_sent(item: Due, uow: UnitOfWork) -> None:
    """The delivery is sent: recorded with notification.sent, as its timer item is marked done."""
    row = await store.delivery_or_raise(
        uow.session, program_id=item.program_id, delivery_id=item.key
    )
    now = uow.clock.now()
    row.status, row.sent_at, row.attempts, row.last_error = "sent", now, item.attempt, None
    uow.emit(NotificationSent(**_about(row), occurred_at=now, message_id=row.message_id))


async def mark_failed(item: Due, reason: str, uow: UnitOfWork) -> None:
    """The delivery failed for good: recorded with notification.failed and the reason."""
    row = await store.delivery_or_raise(
        uow.session, program_id=item.program_id, delivery_id=item.key
    )
    row.status, row.attempts, row.last_error = "failed", item.attempt, reason
    uow.emit(
        NotificationFailed(
            **_about(row), occurred_at=uow.clock.now(), attempts=item.attempt, reason=reason
        )
    )


def send_handler(*, sessions: Sessions, smtp: SmtpConnection, mail_from: str) -> TimerHandler:
    """What the timer loop does with a due send: SMTP, then sent or, in the end, failed."""
    return TimerHandler(
        act=SendMail(sessions=sessions, smtp=smtp, mail_from=mail_from),
        done=mark_sent,
        gave_up=mark_failed,
        max_attempts=MAX_ATTEMPTS,
        retry_base_seconds=RETRY_BASE_SECONDS,
        retry_cap_seconds=RETRY_CAP_SECONDS,
    )


async def run_sender(running: Running) -> None:
    """Sends due deliveries until the service stops."""
    smtp = SmtpConnection(running.settings)
    handler = send_handler(
        sessions=running.sessions, smtp=smtp, mail_from=running.settings.mail_from
    )
    try:
        await timer_loop(store.timers, {deliveries.SEND: handler}, lease=LEASE, batch=BATCH)(
            running
        )
    finally:
        await smtp.close()
