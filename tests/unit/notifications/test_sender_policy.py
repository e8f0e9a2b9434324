"""When the sender retries a delivery, and when it gives up at once."""

from __future__ import annotations

import datetime as dt

import aiosmtplib
import pytest

from services.notifications.sender import _permanent, retry_delay


def refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(code, "refused", f"r{i}@example.org")
            for i, code in enumerate(codes)
        ]
    )


# --- retry_delay ----------------------------------------------------------------------------


def test_retry_delay_starts_at_five_seconds_and_doubles():
    assert [retry_delay(n).total_seconds() for n in range(1, 6)] == [5, 10, 20, 40, 80]


def test_retry_delay_is_capped_at_thirty_minutes():
    assert retry_delay(9) == dt.timedelta(seconds=1280)
    assert retry_delay(10) == dt.timedelta(minutes=30)
    assert retry_delay(60) == dt.timedelta(minutes=30)


def test_retry_delay_never_decreases():
    delays = [retry_delay(n) for n in range(1, 40)]
    assert delays == sorted(delays)
    assert all(isinstance(d, dt.timedelta) for d in delays)


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
