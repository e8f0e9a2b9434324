"""`mentorship outbox`: the outbox rows that can never be published (parked), and re-queueing
them once the cause is fixed (e.g. a raised max_payload)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import migrations
from shared.db import make_engine, make_sessions
from shared.outbox import DeliveryTables, parked_rows, unpark
from shared.settings import SERVICES, Settings


def add_parser(subparsers: Any) -> None:
    """Registers `mentorship outbox list|retry` on the CLI's subcommands."""
    outbox = subparsers.add_parser("outbox", help="outbox rows parked for good, and re-queueing")
    sub = outbox.add_subparsers(dest="outbox_command", required=True)
    ls = sub.add_parser("list", help="show parked rows and why")
    ls.add_argument("--service", choices=SERVICES, help="only this service (default: all four)")
    ls.set_defaults(func=cmd_list)
    retry = sub.add_parser("retry", help="give parked rows back to the relay")
    retry.add_argument("--service", choices=SERVICES, required=True)
    retry.add_argument("--id", type=int, nargs="+", required=True, help="row ids from `list`")
    retry.set_defaults(func=cmd_retry)


def _tables(service: str) -> DeliveryTables:
    metadata = migrations.service_metadata(service)
    return DeliveryTables(outbox=metadata.tables["outbox"], inbox=metadata.tables["inbox"])


class NoDatabase(Exception):
    """A service's SQLite file is not there: never create an empty one."""


def _engine(settings: Settings, service: str) -> AsyncEngine:
    url = make_url(settings.database_url_for(service))
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        raise NoDatabase(
            f"no {service} database at {url.database}: run this where `mentorship up` keeps "
            "its data (set MENTORSHIP_DATA_DIR) or set MENTORSHIP_DATABASE_URL"
        )
    return make_engine(str(url), schema=service)


async def _list(settings: Settings, services: list[str]) -> int:
    found = 0
    for service in services:
        engine = _engine(settings, service)
        try:
            rows = await parked_rows(sessions=make_sessions(engine), tables=_tables(service))
        finally:
            await engine.dispose()
        for row in rows:
            found += 1
            print(
                f"{service} #{row.id} {row.subject} ({row.size:,} bytes, event {row.event_id})\n"
                f"    parked {row.parked_at:%Y-%m-%d %H:%M:%S}: {row.reason}"
            )
    if not found:
        print("no parked outbox rows")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """Shows the parked outbox rows of one service or all."""
    return _run(settings, _list(settings, [args.service] if args.service else list(SERVICES)))


async def _retry(settings: Settings, service: str, ids: list[int]) -> int:
    engine = _engine(settings, service)
    try:
        done = await unpark(sessions=make_sessions(engine), tables=_tables(service), ids=ids)
    finally:
        await engine.dispose()
    print(f"{service}: {done} of {len(ids)} row(s) back in the relay's queue")
    return 0 if done == len(ids) else 1


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    """Returns parked rows to the relay, which publishes them in order with the rest."""
    return _run(settings, _retry(settings, args.service, args.id))


def _run(settings: Settings, work: Any) -> int:
    try:
        code: int = asyncio.run(work)
    except NoDatabase as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, SQLAlchemyError) as exc:
        reason = str(exc).splitlines()[0]
        print(
            f"error: cannot read the services' databases ({reason}); set MENTORSHIP_DATA_DIR "
            "or MENTORSHIP_DATABASE_URL to where the services keep them",
            file=sys.stderr,
        )
        return 1
    return code
