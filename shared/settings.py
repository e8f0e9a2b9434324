"""One settings object, read from the environment (prefix MENTORSHIP_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("pairing", "scheduling", "notifications", "insights")
DEFAULT_HTTP_PORTS = {"insights": 8080, "pairing": 8081, "scheduling": 8082, "notifications": 8083}


class Settings(BaseSettings):
    """Everything a service or the CLI can be configured with; see README 'Configuration'."""

    model_config = SettingsConfigDict(env_prefix="MENTORSHIP_", extra="ignore")

    data_dir: Path = Path("mentorship-data")
    nats_url: str = "nats://127.0.0.1:4222"
    nats_port: int = Field(default=4322, description="port of the nats-server `up` starts")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL shared by all services (one schema each); default SQLite files",
    )
    pairing_database_url: str | None = None
    scheduling_database_url: str | None = None
    notifications_database_url: str | None = None
    insights_database_url: str | None = None

    smtp_host: str | None = Field(default=None, description="unset: `up` starts a local catcher")
    smtp_port: int = Field(default=2525, description="also the port of `up`'s local catcher")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_timeout_seconds: float = 10.0
    smtp_pool_size: int = Field(default=4, ge=1, le=32, description="SMTP connections reused")
    mail_from: str = "mentorship@localhost"
    mail_from_name: str = "Mentorship Program"

    http_host: str = "127.0.0.1"
    pairing_http_port: int = DEFAULT_HTTP_PORTS["pairing"]
    scheduling_http_port: int = DEFAULT_HTTP_PORTS["scheduling"]
    notifications_http_port: int = DEFAULT_HTTP_PORTS["notifications"]
    insights_http_port: int = DEFAULT_HTTP_PORTS["insights"]

    insights_api_tokens: SecretStr | None = Field(
        default=None,
        description="tokens insights accepts besides `mentorship token create` ones: "
        "'program-a=token1,program-b=token2' (stored hashed at start)",
    )

    link_secret: SecretStr | None = Field(
        default=None,
        description="signs the links in emails (accept/decline, 'we met', check-in form, ICS "
        "feed); at least 32 characters; `up` keeps a generated one in the data directory",
    )
    pairing_public_url: str | None = Field(
        default=None, description="where participants reach pairing's HTTP (links in emails)"
    )
    scheduling_public_url: str | None = None
    notifications_public_url: str | None = None
    insights_public_url: str | None = None

    trace_console: bool = False
    trace_file: Path | None = Field(
        default=None, description="append spans as JSON lines; '{service}' in the name is replaced"
    )
    otlp_endpoint: str | None = Field(
        default=None, description="e.g. http://localhost:4318/v1/traces; off when unset"
    )

    max_deliver: int = Field(default=6, ge=2, description="deliveries before dead-lettering")
    batch_size: int = Field(default=512, ge=1, le=2000, description="events fetched per batch")
    fetch_timeout_seconds: float = Field(default=1.0, gt=0)
    relay_batch_size: int = Field(
        default=1000,
        ge=1,
        le=5000,
        description="outbox rows read and published (pipelined, in order) per relay batch",
    )
    ack_wait_seconds: float = Field(
        default=30.0, ge=5, description="JetStream redelivers an unacked message after this"
    )
    barrier_stall_seconds: float = Field(
        default=120.0,
        gt=0,
        description="an event waiting for earlier events of other subjects is retried once "
        "their consumer made no progress for this long",
    )
    migrate_on_start: bool = Field(
        default=True, description="services upgrade their database to the newest migration"
    )
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    outbox_retention_days: float = Field(default=7, gt=0, description="published outbox rows")
    inbox_retention_days: float = Field(
        default=90, gt=0, description="inbox rows; must outlive redeliveries and DLQ replays"
    )
    kickoff_lead_days: int = Field(default=2, ge=0)
    session_notice_hours: float = Field(default=24, ge=0, description="scheduling: least notice")
    session_buffer_minutes: int = Field(default=15, ge=0, description="between a person's sessions")
    session_cadence_days: int = Field(default=14, ge=1, le=92, description="until a charter says")
    missed_after_hours: float = Field(default=24, gt=0, description="unconfirmed -> session.missed")
    session_rhythms: str = Field(
        default="",
        description="scheduling: extra series per pair, e.g. 'coffee_chat,quarterly_reflection'",
    )
    checkin_escalation_hours: str = Field(
        default="48,96,168", description="hours after a check-in is due: levels 1, 2, 3"
    )
    checkin_escalation_by_program: dict[str, str] = Field(
        default_factory=dict, description='per program, e.g. {"prog-a": "24,48,72"} (JSON)'
    )
    reminder_hours: str = Field(
        default="24,1",
        description="notifications: hours before each session a reminder goes out ('' for none)",
    )
    pairing_consent_required: bool = Field(
        default=False,
        description="pairing: rounds propose pairs (pair.proposed) and form them only once both "
        "people accept; off: rounds form pairs at once",
    )
    pairing_consent_by_program: dict[str, bool] = Field(
        default_factory=dict, description='per program, e.g. {"prog-a": true} (JSON)'
    )
    pairing_proposal_hours: float = Field(
        default=72, gt=0, description="pairing: a proposal nobody answered expires after this"
    )
    pairing_coordinator_secret: SecretStr | None = Field(
        default=None,
        description="pairing: bearer token for its coordinator endpoints (POST "
        "/programs/{p}/matching, /programs/{p}/rules, ...) and `mentorship rules`; unset: they "
        "are refused (403)",
    )
    replies_smtp_port: int | None = Field(
        default=None,
        description="notifications: port of the built-in SMTP receiver reading calendar replies "
        "to MAIL_FROM (the organizer); unset: replies are not read",
    )
    replies_imap_host: str | None = Field(
        default=None,
        description="notifications: IMAP server of the organizer's mailbox, polled for calendar "
        "replies (besides or instead of REPLIES_SMTP_PORT); unset: no mailbox is polled",
    )
    replies_imap_port: int | None = Field(
        default=None, description="unset: 993 with REPLIES_IMAP_SECURITY=tls, else 143"
    )
    replies_imap_security: Literal["none", "starttls", "tls"] = "tls"
    replies_imap_username: str | None = None
    replies_imap_password: SecretStr | None = None
    replies_imap_mailbox: str = Field(default="INBOX", description="the folder polled")
    replies_imap_other_mailbox: str | None = Field(
        default=None,
        description="mail that is no calendar reply is moved to this folder (created when "
        "missing); unset: it is left where it is, unread",
    )
    replies_imap_poll_seconds: float = Field(default=60.0, gt=0, description="between polls")
    replies_imap_timeout_seconds: float = Field(default=30.0, gt=0, description="per command")
    quiet_hours: str = Field(
        default="20:00-08:00",
        description="notifications: local times in the recipient's zone when non-urgent mail "
        "waits ('' for none); invitations, session changes and reminders go at once",
    )
    quiet_weekends: bool = Field(
        default=True, description="notifications: non-urgent mail also waits through weekends"
    )
    coordinators: dict[str, str] = Field(
        default_factory=dict,
        description='notifications: per program, its coordinator, e.g. {"prog-a": "Ada Lee '
        '<ada@example.org>"} (JSON): Reply-To of its mails, recipient of at-risk alerts and '
        "the last level of overdue check-ins",
    )
    program_video_urls: dict[str, str] = Field(
        default_factory=dict,
        description='notifications: per program, where its sessions meet, e.g. {"prog-a": '
        '"https://meet.example.org/prog-a"} (JSON); used when a session event carries no video '
        "link",
    )
    digest_hour: int = Field(
        default=9,
        ge=0,
        le=23,
        description="notifications: local hour (recipient's zone) of the daily digest of "
        "low-urgency mail; quiet hours still apply",
    )
    daily_mail_cap: int = Field(
        default=3,
        ge=0,
        description="notifications: at most this many non-essential mails per person per local "
        "day; the rest wait for the next digest (0: no cap)",
    )
    assessment_survey: bool = Field(
        default=True,
        description="notifications: mail the quarterly program assessment survey on the first "
        "day of each quarter",
    )
    touchpoint_days: float = Field(
        default=3,
        ge=0,
        description="notifications: days after a session held that the pair gets a reflective "
        "prompt (or the reading their charter chose, charter.agreed touchpoint); 0: none",
    )
    cpu_workers: int = Field(
        default=1, ge=1, description="worker processes for CPU-heavy work (matching, MIME)"
    )
    log_level: str = "INFO"

    def database_url_for(self, service: str) -> str:
        """The database URL of one service: its own override, the shared URL, or SQLite."""
        own: str | None = getattr(self, f"{service}_database_url", None)
        if own:
            return own
        if self.database_url:
            return self.database_url
        path = (self.data_dir / f"{service}.sqlite3").resolve()
        return f"sqlite+aiosqlite:///{path}"

    def public_url_for(self, service: str) -> str:
        """The base URL participants reach a service's HTTP on (no trailing slash)."""
        own: str | None = getattr(self, f"{service}_public_url", None)
        if own:
            return own.rstrip("/")
        return f"http://{self.http_host}:{self.http_port_for(service)}"

    def http_port_for(self, service: str) -> int:
        """The HTTP port of one service."""
        port: int = getattr(self, f"{service}_http_port")
        return port
