"""When the sender retries a delivery, and when it gives up at once."""

from __future__ import annotations

from pathlib import Path

import aiosmtplib
import pytest

from services.notifications.sender import MAX_ATTEMPTS, SmtpConnection, _permanent, send_handler
from shared.backoff import backoff
from shared.db import make_engine, make_sessions
from shared.settings import Settings


def refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(code, "refused", f"r{i}@example.org")
            for i, code in enumerate(codes)
        ]
    )


# --- retries --------------------------------------------------------------------------------


def send_retry_delays(attempts: range, tmp_path: Path) -> list[float]:
    handler = send_handler(
        sessions=make_sessions(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'n.sqlite3'}")),
        smtp=SmtpConnection(Settings()),
        mail_from="team@mentoring.example",
    )
    assert handler.max_attempts == MAX_ATTEMPTS
    return [
        backoff(n, base=handler.retry_base_seconds, cap=handler.retry_cap_seconds) for n in attempts
    ]


def test_a_failed_send_is_retried_after_five_seconds_then_twice_as_long_each_time(tmp_path):
    assert send_retry_delays(range(1, 6), tmp_path) == [5, 10, 20, 40, 80]


def test_retries_of_a_send_are_at_most_thirty_minutes_apart(tmp_path):
    assert send_retry_delays(range(9, 12), tmp_path) == [1280, 1800, 1800]
    assert max(send_retry_delays(range(1, 60), tmp_path)) == 1800


# --- _permanent -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPResponseException(550, "5.1.1 no such user"),
        aiosmtplib.SMTPResponseException(599, "odd but permanent"),
        aiosmtplib.SMTPDataError(554, "5.7.1 message rejected"),
        aiosmtplib.SMTPRecipientRefused(550, "5.1.1 unknown", "x@example.org"),
        refused(550),
        refused(550, 553),
    ],
    ids=["550", "599", "data-554", "recipient-550", "recipients-550", "recipients-550-553"],
)
def test_5xx_answers_about_recipient_or_message_are_permanent(exc):
    assert _permanent(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPResponseException(421, "4.3.2 shutting down"),
        aiosmtplib.SMTPResponseException(451, "4.7.1 try later"),
        aiosmtplib.SMTPDataError(452, "4.3.1 insufficient storage"),
        aiosmtplib.SMTPRecipientRefused(450, "4.2.1 mailbox busy", "x@example.org"),
        refused(450),
        refused(550, 451),
        aiosmtplib.SMTPResponseException(600, "out of range"),
    ],
    ids=["421", "451", "data-452", "recipient-450", "recipients-450", "recipients-mixed", "600"],
)
def test_4xx_answers_are_retried(exc):
    assert _permanent(exc) is False


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPServerDisconnected("connection lost"),
        aiosmtplib.SMTPConnectError("could not connect"),
        aiosmtplib.SMTPConnectTimeoutError("timed out connecting"),
        aiosmtplib.SMTPReadTimeoutError("timed out reading"),
        ConnectionRefusedError(111, "Connection refused"),
        OSError("network unreachable"),
        TimeoutError(),
    ],
    ids=[
        "disconnected",
        "connect",
        "connect-timeout",
        "read-timeout",
        "refused",
        "oserror",
        "timeout",
    ],
)
def test_connection_errors_are_retried(exc):
    assert _permanent(exc) is False


def test_authentication_failure_is_retried_not_blamed_on_the_message():
    assert _permanent(aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials")) is False


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPConnectResponseError(554, "5.7.1 no SMTP service here"),
        aiosmtplib.SMTPHeloError(550, "5.7.1 go away"),
    ],
    ids=["connect-554", "helo-550"],
)
def test_5xx_at_connection_setup_is_not_blamed_on_the_message(exc):
    assert _permanent(exc) is False
