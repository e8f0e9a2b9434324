"""When the sender retries a delivery, and when it gives up at once."""

from __future__ import annotations

import aiosmtplib
import pytest

from services.notifications.sender import retry_delay
from services.notifications.smtp import Outcome, _permanent, classify


def refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(code, "refused", f"r{i}@example.org")
            for i, code in enumerate(codes)
        ]
    )


# --- retries --------------------------------------------------------------------------------


def test_a_failed_send_is_retried_after_about_five_seconds_then_twice_as_long_each_time():
    assert [retry_delay(n, rand=lambda: 1.0) for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert [retry_delay(n, rand=lambda: 0.0) for n in range(1, 6)] == [2.5, 5, 10, 20, 40]


def test_retries_of_a_send_are_at_most_thirty_minutes_apart():
    assert max(retry_delay(n, rand=lambda: 1.0) for n in range(1, 60)) == 1800


def test_retries_are_spread_by_jitter_so_a_burst_does_not_come_back_at_once():
    delays = {retry_delay(3) for _ in range(50)}
    assert len(delays) > 40
    assert all(10 <= d <= 20 for d in delays)


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


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPConnectError("could not connect"),
        aiosmtplib.SMTPReadTimeoutError("timed out reading"),
        aiosmtplib.SMTPResponseException(421, "4.3.2 shutting down"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=["connect", "read-timeout", "421", "refused"],
)
def test_trouble_with_the_server_itself_counts_for_the_circuit_breaker(exc):
    assert classify(exc).outcome == Outcome.SERVER


def test_a_4xx_about_one_message_is_retried_without_blaming_the_server():
    assert classify(aiosmtplib.SMTPDataError(452, "4.3.1 full")).outcome == Outcome.TRANSIENT
    assert classify(refused(550)).outcome == Outcome.PERMANENT
