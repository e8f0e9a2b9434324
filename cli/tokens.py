"""`mentorship token create|list|revoke`: coordinators' tokens, in the database of the insights
that runs, never in a new one."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from cli.runtime import running_in, where_others_run
from services.insights import grants, store
from services.insights.tokens import new_token
from shared.clock import Clock, SystemClock
from shared.db import make_engine, make_sessions
from shared.settings import Settings

TOKENS_TABLE = store.ApiToken.__tablename__


class TokenStoreMissing(Exception):
    """Insights' database or its tokens table is not there; the message says where we looked."""


def add_parser(subparsers: Any) -> None:
    """Registers `mentorship token create|list|revoke` on the CLI's subcommands."""
    token = subparsers.add_parser("token", help="coordinators' API tokens")
    sub = token.add_subparsers(dest="token_command", required=True)
    create = sub.add_parser("create", help="create a token scoped to one program (shown once)")
    create.add_argument("--program", required=True)
    create.add_argument("--label", default="coordinator", help="who or what it is for")
    create.add_argument(
        "--expires-in-days", type=float, default=None, help="valid this long (default: forever)"
    )
    create.set_defaults(func=cmd_create)
    ls = sub.add_parser("list", help="the stored tokens: id, program, label, status, expiry")
    ls.add_argument("--program", help="only this program's")
    ls.set_defaults(func=cmd_list)
    revoke = sub.add_parser("revoke", help="revoke a token (by the id `list` shows)")
    revoke.add_argument("token_id", help="the id from `mentorship token list`, or the token")
    revoke.set_defaults(func=cmd_revoke)


def _pointers(settings: Settings) -> str:
    """How to point the command at the database of the insights that runs."""
    data_dir = settings.data_dir.resolve()
    here = running_in(data_dir)
    if here is not None:
        return f"{here.summary()} runs on {data_dir}: wait until it is ready, then retry"
    return (
        f"run it where `mentorship up` runs or set MENTORSHIP_DATA_DIR to its data directory "
        f"(now {data_dir}), or MENTORSHIP_INSIGHTS_DATABASE_URL / MENTORSHIP_DATABASE_URL to "
        f"insights' database{where_others_run(data_dir)}"
    )


def _has_tokens_table(connection: Connection, schema: str | None) -> bool:
    return bool(inspect(connection).has_table(TOKENS_TABLE, schema=schema))


def existing_insights_database(settings: Settings) -> str:
    """Insights' database URL; for SQLite only if the file exists (never make an empty one)."""
    url = settings.database_url_for("insights")
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (
        parsed.database and Path(parsed.database).is_file()
    ):
        # connecting would create an empty database the running insights never reads
        raise TokenStoreMissing(f"no insights database at {parsed.database}: {_pointers(settings)}")
    return url


@asynccontextmanager
async def token_store(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A transaction on the running insights' tokens table (TokenStoreMissing if none)."""
    url = existing_insights_database(settings)
    sqlite = make_url(url).get_backend_name() == "sqlite"
    engine = make_engine(url, schema="insights")
    try:
        async with engine.connect() as conn:
            if not await conn.run_sync(_has_tokens_table, None if sqlite else "insights"):
                raise TokenStoreMissing(
                    f"insights' database {engine.url.render_as_string(hide_password=True)} has "
                    f"no {TOKENS_TABLE} table (insights never started on it, or it is another "
                    f"database): start insights once (`mentorship up`) or run "
                    f"`mentorship migrate --service insights`; {_pointers(settings)}"
                )
        async with make_sessions(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


async def create_token(
    settings: Settings,
    *,
    program_id: str,
    label: str,
    clock: Clock | None = None,
    expires_in: dt.timedelta | None = None,
) -> str:
    """Stores a new token's digest for the program and returns the token itself."""
    now = (clock or SystemClock()).now()
    token = new_token()
    async with token_store(settings) as session:
        await grants.add_token(
            session,
            token=token,
            program_id=program_id,
            label=label,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
        )
    return token


async def list_tokens(
    settings: Settings, *, program_id: str | None = None, clock: Clock | None = None
) -> list[dict[str, str]]:
    """The stored tokens, as `token list` prints them (never the tokens themselves)."""
    now = (clock or SystemClock()).now()
    async with token_store(settings) as session:
        rows = await grants.list_tokens(session, program_id=program_id)
        return [
            {
                "id": row.token_id or row.token_hash[:12],
                "program": row.program_id,
                "label": row.label,
                "status": grants.status_of(row, now),
                "created": store.utc(row.created_at).strftime("%Y-%m-%d %H:%M"),
                "expires": store.utc(row.expires_at).strftime("%Y-%m-%d %H:%M")
                if row.expires_at
                else "never",
            }
            for row in rows
        ]


async def revoke_token(settings: Settings, *, token_id: str, clock: Clock | None = None) -> str:
    """Revokes the token; returns its program (TokenStoreMissing-like LookupError if none)."""
    async with token_store(settings) as session:
        row = await grants.revoke(session, token_id=token_id, now=(clock or SystemClock()).now())
        if row is None:
            raise LookupError(
                f"no token with id {token_id!r}; `mentorship token list` shows the ids"
            )
        return row.program_id


def _run(settings: Settings, work: Any) -> Any:
    try:
        return asyncio.run(work)
    except (TokenStoreMissing, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    except (OSError, SQLAlchemyError) as exc:
        reason = " ".join(str(exc).split())[:300]
        print(
            f"error: cannot reach insights' database ({settings.database_url_for('insights')}): "
            f"{reason}. Check MENTORSHIP_INSIGHTS_DATABASE_URL, MENTORSHIP_DATABASE_URL or "
            "MENTORSHIP_DATA_DIR",
            file=sys.stderr,
        )
        return None


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    """Creates a bearer token scoped to one program and prints it once."""
    days = args.expires_in_days
    if days is not None and days <= 0:
        print("error: --expires-in-days must be more than 0", file=sys.stderr)
        return 2
    expires = dt.timedelta(days=days) if days else None
    token = _run(
        settings,
        create_token(settings, program_id=args.program, label=args.label, expires_in=expires),
    )
    if token is None:
        return 1
    print(token)
    until = f", valid for {days:g} days" if days else ""
    print(
        f"(scoped to program {args.program!r}{until}; stored hashed, it cannot be shown again; "
        "`mentorship token list` shows its id)",
        file=sys.stderr,
    )
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """Prints the stored tokens."""
    rows = _run(settings, list_tokens(settings, program_id=args.program))
    if rows is None:
        return 1
    if not rows:
        print("no tokens; create one with `mentorship token create --program <id>`")
        return 0
    columns = ("id", "program", "label", "status", "created", "expires")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns))
    return 0


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revokes a token: the API refuses it (401) from now on."""
    program = _run(settings, revoke_token(settings, token_id=args.token_id))
    if program is None:
        return 1
    print(f"revoked token {args.token_id[:12]} of program {program!r}")
    return 0
