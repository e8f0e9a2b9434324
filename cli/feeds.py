"""`mentorship feeds create|revoke`: a participant's ICS feed URL, and taking it back."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from shared.clock import SystemClock
from shared.db import make_engine, make_sessions
from shared.errors import EventRejected, UnknownReference
from shared.settings import Settings


def add_parser(subparsers: Any) -> None:
    """Registers `mentorship feeds create|revoke` on the CLI's subcommands."""
    parser = subparsers.add_parser("feeds", help="participants' calendar (ICS) feed URLs")
    sub = parser.add_subparsers(dest="feeds_command", required=True)
    for name, helptext, func in (
        ("create", "print a new feed URL for a participant", cmd_create),
        ("revoke", "revoke every feed URL of a participant", cmd_revoke),
    ):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("--program", required=True)
        command.add_argument("--participant", required=True)
        command.set_defaults(func=func)


async def _run(args: argparse.Namespace, settings: Settings, *, create: bool) -> int:
    # imported here: scheduling's calendar code would cost every CLI command a second to start
    from services.scheduling import feeds

    url = make_url(settings.database_url_for("scheduling"))
    engine = make_engine(str(url), schema="scheduling")
    ids = {"program_id": args.program, "participant_id": args.participant}
    try:
        async with make_sessions(engine)() as session, session.begin():
            now = SystemClock().now()
            if create:
                token = await feeds.create(session, **ids, now=now)
                base = settings.public_url_for("scheduling")
                print(f"{base}{feeds.PATH.format(token=token)}")
            else:
                revoked = await feeds.revoke(session, **ids, now=now)
                print(f"revoked {revoked} feed(s) of {args.participant} in {args.program}")
    except (UnknownReference, EventRejected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    return 0


def _database_missing(settings: Settings) -> bool:
    url = make_url(settings.database_url_for("scheduling"))
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        print(
            f"no scheduling database at {url.database}: run this where `mentorship up` keeps "
            "its data (set MENTORSHIP_DATA_DIR) or set MENTORSHIP_DATABASE_URL",
            file=sys.stderr,
        )
        return True
    return False


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    """Prints a new feed URL (shown once: only its hash is stored)."""
    return 1 if _database_missing(settings) else asyncio.run(_run(args, settings, create=True))


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revokes the participant's feeds: their URLs answer 404 from now on."""
    return 1 if _database_missing(settings) else asyncio.run(_run(args, settings, create=False))
