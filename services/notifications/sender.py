"""The sender loop: sends due deliveries over one reused SMTP connection, with retry and backoff.

A delivery is claimed with a conditional update before it is sent, so two replicas never send
the same one; it is marked sent (and notification.sent emitted) in one transaction afterwards.
A crash between the SMTP 250 and that commit resends the mail once with the same Message-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

import aiosmtplib
from opentelemetry import trace
from sqlalchemy import update

from services.notifications import store
from shared.events import Channel, NotificationFailed, NotificationSent
from shared.service import Running
from shared.settings import Settings
from shared.telemetry import context_from_traceparent, tracer

log = logging.getLogger("mentorship.notifications.sender")

MAX_ATTEMPTS = 8
CLAIM_SECONDS = 120
BATCH = 50


def retry_delay(attempts: int) -> dt.timedelta:
    """Backoff after the n-th failed attempt: 5 s, 10 s, 20 s ... capped at 30 minutes."""
    return dt.timedelta(seconds=min(5 * 2 ** (attempts - 1), 1800))


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


async def _claim(running: Running, delivery_id: str, now: dt.datetime) -> bool:
    async with running.sessions() as session, session.begin():
        result = await session.execute(
            update(store.Delivery)
            .where(
                store.Delivery.delivery_id == delivery_id,
                store.Delivery.status == "pending",
                store.Delivery.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + dt.timedelta(seconds=CLAIM_SECONDS))
        )
        return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


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


async def _finish(running: Running, delivery_id: str, error: Exception | None) -> None:
    now = running.clock.now()
    async with running.unit_of_work() as uow:
        row = await uow.session.get(store.Delivery, delivery_id)
        assert row is not None
        row.attempts += 1
        if error is None:
            row.status, row.sent_at, row.last_error = "sent", now, None
            uow.emit(NotificationSent(**_about(row), occurred_at=now, message_id=row.message_id))
            return
        row.last_error = f"{type(error).__name__}: {error}"[:2000]
        if _permanent(error) or row.attempts >= MAX_ATTEMPTS:
            row.status = "failed"
            uow.emit(
                NotificationFailed(
                    **_about(row), occurred_at=now, attempts=row.attempts, reason=row.last_error
                )
            )
            log.error("delivery %s failed for good: %s", delivery_id, row.last_error)
        else:
            row.next_attempt_at = now + retry_delay(row.attempts)
            log.warning(
                "delivery %s attempt %d failed (%s); retrying at %s",
                delivery_id,
                row.attempts,
                row.last_error,
                row.next_attempt_at,
            )


async def send_due(running: Running, smtp: SmtpConnection, sender: str) -> int:
    """Sends every due delivery once; returns how many were attempted."""
    now = running.clock.now()
    async with running.sessions() as session:
        due = await store.due_deliveries(session, now=now, limit=BATCH)
    attempted = 0
    for delivery in due:
        if not await _claim(running, delivery.delivery_id, now):
            continue  # another replica has it
        attempted += 1
        with tracer().start_as_current_span(
            "smtp send",
            context=context_from_traceparent(delivery.traceparent),
            kind=trace.SpanKind.CLIENT,
        ) as span:
            span.set_attribute("mentorship.delivery_id", delivery.delivery_id)
            span.set_attribute("email.message_id", delivery.message_id)
            error: Exception | None = None
            try:
                await smtp.send(
                    sender=sender, recipient=delivery.recipient_email, message=delivery.message
                )
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                error = exc
                span.record_exception(exc)
            await _finish(running, delivery.delivery_id, error)
        running.relay.wake()
    return attempted


async def run_sender(running: Running) -> None:
    """Sends due deliveries until cancelled."""
    smtp = SmtpConnection(running.settings)
    try:
        while True:
            try:
                attempted = await send_due(running, smtp, running.settings.mail_from)
            except Exception:
                log.exception("sender loop: will try again")
                attempted = 0
            if attempted == 0:
                await asyncio.sleep(0.3)
    finally:
        await smtp.close()
