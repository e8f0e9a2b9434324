"""The envelope every event carries, and the value types events share."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic.networks import validate_email
from pydantic_core import core_schema

SUBJECT_PREFIX = "mentorship"
SCHEMA_VERSION = 1


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: 'Europe', too long
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. 'Europe/Berlin')") from exc
    return name


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


TimeZoneName = Annotated[str, AfterValidator(_known_zone)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_as_utc)]
Id = Annotated[str, Field(min_length=1, max_length=200)]
# a name ends up in mail headers and calendar properties: one line, no control characters
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(
    rf"(?P<local>{_ATEXT}(?:\.{_ATEXT})*)@(?P<domain>(?:{_LABEL}\.)+[A-Za-z]{{2,63}})"
)
_SPECIAL_USE = frozenset(("arpa", "invalid", "local", "localhost", "onion", "test"))


def _email(value: str) -> str:
    """An email address as pydantic's EmailStr validates it, with a fast path for plain ones.

    Plain ASCII addresses, nearly all of them, are checked here with the rules email-validator
    applies to them (it cost more than half of a registration's validation); anything else goes
    to email-validator itself, through pydantic.
    """
    match = _PLAIN_ADDRESS.fullmatch(value)
    if match and _plain_address_is_valid(match["local"], match["domain"]):
        return f"{match['local']}@{match['domain'].lower()}"
    return validate_email(value)[1]


class _EmailSchema:
    def __get_pydantic_core_schema__(
        self, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_email, core_schema.str_schema())

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        field_schema = handler(schema)
        field_schema.update(type="string", format="email")
        return field_schema


EmailAddress = Annotated[str, _EmailSchema()]


def _plain_address_is_valid(local: str, domain: str) -> bool:
    return (
        len(local) <= 64
        and len(local) + 1 + len(domain) <= 254
        and len(domain) <= 253
        and "--" not in domain  # punycode and its look-alikes: email-validator decides
        # the special-use names are single labels, and the pattern needs a dot before the last
        and domain[domain.rindex(".") + 1 :].lower() not in _SPECIAL_USE
    )


# a language as participants state it, compared in lower case (normalised in pydantic's core)
Language = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)]
DisplayName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class Role(StrEnum):
    MENTOR = "mentor"
    MENTEE = "mentee"


class Channel(StrEnum):
    EMAIL = "email"
    CHAT = "chat"
    SMS = "sms"


class SessionKind(StrEnum):
    KICKOFF = "kickoff"
    REGULAR = "regular"
    FEEDBACK_MOMENT = "feedback_moment"
    COFFEE_CHAT = "coffee_chat"
    SHADOWING = "shadowing"
    QUARTERLY_REFLECTION = "quarterly_reflection"


class WorkingHours(BaseModel):
    """One stretch of working time on a weekday, in the person's own local time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weekday: int = Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday")
    start: dt.time
    end: dt.time = Field(
        description="an end at or before the start is on the next day (night shift 22:00-06:00)"
    )

    @model_validator(mode="after")
    def _start_before_end(self) -> WorkingHours:
        if self.start == self.end:
            raise ValueError(
                f"working hours start and end are both {self.start}: give when the day ends "
                "(an end before the start means the next day, e.g. 22:00-06:00)"
            )
        return self

    def to_json(self) -> dict[str, Any]:
        """As model_dump(mode="json") gives it, at a fraction of the cost (a hot path)."""
        return {
            "weekday": self.weekday,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }


def no_items(*, description: str | None = None, max_length: int | None = None) -> Any:
    """An empty-list default that pydantic need not deep-copy for every event (schema: [])."""
    return Field(
        default_factory=list,
        description=description,
        max_length=max_length,
        json_schema_extra={"default": []},
    )


def _envelope_required(schema: dict[str, Any]) -> None:
    # emitters get a default event_id in code; on the wire both fields are required
    envelope = ["occurred_at", "event_id"]
    schema["required"] = envelope + [n for n in schema.get("required", []) if n not in envelope]


class Event(BaseModel):
    """The envelope every event carries; subclasses add the payload."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_envelope_required)

    subject: ClassVar[str]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    # no default: every emitter takes the instant from the injectable clock (uow.clock)
    occurred_at: UtcDatetime
    program_id: Id
    schema_version: Literal[1] = 1

    @classmethod
    def event_type(cls) -> str:
        """The CloudEvents type, e.g. 'mentorship.session.held'."""
        return cls.subject


def dead_letter_subject(service: str) -> str:
    """Where a service parks the messages it cannot process."""
    return f"{SUBJECT_PREFIX}.dlq.{service}"
