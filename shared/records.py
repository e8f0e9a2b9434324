"""Lookups of records keyed by (program_id, id) that must exist, shared by every service's store.

A record of one program is never reachable from an event of another: a miss in the event's own
program is an UnknownReference (retried: the record may still be on its way), unless the id
exists in another program, which is a ProgramMismatch (dead-lettered at once, never applied).
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from shared.errors import ProgramMismatch, UnknownReference

Row = TypeVar("Row", bound=DeclarativeBase)


async def get_or_raise(
    session: AsyncSession,
    model: type[Row],
    program_id: str,
    *key: Any,
    what: str,
    hint: str,
) -> Row:
    """The row of `model` with primary key (program_id, *key), or an exception that says why not.

    `what` names the record for people ("participant 'p-1'"), `hint` says what to do when it was
    never introduced ("publish participant.registered first").
    """
    row = await session.get(model, (program_id, *key))
    if row is not None:
        return row
    mapper = model.__mapper__
    pk = mapper.primary_key
    if pk[0].name != "program_id":
        raise TypeError(f"{model.__name__} must be keyed by (program_id, ...) for get_or_raise")
    other = await session.scalar(
        select(pk[0])
        .where(*(col == value for col, value in zip(pk[1:], key, strict=True)))
        .limit(1)
    )
    if other is not None:
        raise ProgramMismatch(
            f"{what} belongs to another program, not to {program_id!r}; the event is never "
            "applied: fix its program_id and replay it"
        )
    raise UnknownReference(f"{what} of program {program_id!r} is unknown here; {hint}")
