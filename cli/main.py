"""`mentorship`: up, demo, streams, token, dlq, asyncapi."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
from nats.js import JetStreamContext
from sqlalchemy.exc import SQLAlchemyError

from cli import migrate
from cli.launcher import LaunchError, System
from shared.bus import STREAM, connect_once, ensure_stream, list_dead_letters, replay_dead_letter
from shared.settings import SERVICES, Settings

ASYNCAPI_DIR = Path("docs/asyncapi")


def cmd_up(args: argparse.Namespace) -> int:
    """Runs the whole system until Ctrl-C."""
    system = System(Settings(), external_nats="MENTORSHIP_NATS_URL" in os.environ)
    try:
        with system.running():
            print("mentorship is up; Ctrl-C stops everything.")
            print(f"  publish events to {system.nats_url} (subjects mentorship.<entity>.<verb>)")
            print(f"  insights API: {system.http_url('insights')}/docs")
            code = system.wait_until_stopped()
            print("stopping ...")
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("stopped.")
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    """Runs the sample cohort through the system and shows what happened."""
    from cli.demo import run_demo

    try:
        return run_demo(keep_running=args.keep_running)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _on_jetstream(work: Callable[[JetStreamContext], Awaitable[int]]) -> int:
    """Runs one command's work on a short-lived connection to the configured NATS."""

    async def run() -> int:
        nc = await connect_once(Settings().nats_url)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.drain()

    return asyncio.run(run())


def cmd_streams(args: argparse.Namespace) -> int:
    """Declares (or updates) the MENTORSHIP stream: the stream owner's step."""

    async def work(js: JetStreamContext) -> int:
        await ensure_stream(js, replicas=args.replicas)
        print(f"stream MENTORSHIP ready on {Settings().nats_url}")
        return 0

    return _on_jetstream(work)


def cmd_token_create(args: argparse.Namespace) -> int:
    """Creates a bearer token scoped to one program and prints it once."""
    from cli.tokens import create_token

    settings = Settings()
    try:
        token = asyncio.run(create_token(settings, program_id=args.program, label=args.label))
    except (OSError, SQLAlchemyError) as exc:
        print(
            f"error: cannot store the token in insights' database "
            f"({settings.database_url_for('insights')}): {exc}. Check MENTORSHIP_DATABASE_URL "
            "or MENTORSHIP_INSIGHTS_DATABASE_URL.",
            file=sys.stderr,
        )
        return 1
    print(token)
    print(
        f"(scoped to program {args.program!r}; stored hashed, it cannot be shown again)",
        file=sys.stderr,
    )
    return 0


def cmd_dlq_list(args: argparse.Namespace) -> int:
    """Shows the dead letters of one service or all."""

    async def work(js: JetStreamContext) -> int:
        parked = await list_dead_letters(js, args.service)
        if not parked:
            print("no dead letters")
        for p in parked:
            print(f"#{p.sequence} {p.at} {p.service} {p.original_subject}\n    reason: {p.reason}")
            if args.show_payload:
                print(f"    payload: {p.payload[:500]!r}")
        return 0

    return _on_jetstream(work)


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    """Re-drives dead letters onto their original subjects."""

    async def work(js: JetStreamContext) -> int:
        parked = await list_dead_letters(js, args.service)
        chosen = [p for p in parked if not args.seq or p.sequence in args.seq]
        if not chosen:
            print("nothing to replay (see `mentorship dlq list`)")
        for n, p in enumerate(chosen, 1):
            await replay_dead_letter(js, p)
            print(f"[{n}/{len(chosen)}] replayed #{p.sequence} to {p.original_subject}")
        return 0

    return _on_jetstream(work)


def cmd_dlq_discard(args: argparse.Namespace) -> int:
    """Removes dead letters that will never be processed (e.g. garbage from a broken publisher)."""

    async def work(js: JetStreamContext) -> int:
        parked = {p.sequence: p for p in await list_dead_letters(js, args.service)}
        unknown = [seq for seq in args.seq if seq not in parked]
        if unknown:
            print(
                f"not dead letters{' of ' + args.service if args.service else ''}: "
                f"{unknown} (see `mentorship dlq list`)",
                file=sys.stderr,
            )
            return 1
        for seq in args.seq:
            await js.delete_msg(STREAM, seq)
            print(f"discarded #{seq} ({parked[seq].original_subject}: {parked[seq].reason})")
        return 0

    return _on_jetstream(work)


def asyncapi_documents() -> dict[str, str]:
    """Each service's AsyncAPI document, as the code generates it."""
    from shared.clock import SystemClock
    from shared.service import Service

    settings = Settings()
    documents = {}
    for name in SERVICES:
        module = __import__(f"services.{name}.app", fromlist=["definition"])
        service = Service(module.definition(settings), settings, SystemClock())
        documents[name] = json.dumps(service.asyncapi(), indent=2, sort_keys=True) + "\n"
    return documents


def cmd_asyncapi(args: argparse.Namespace) -> int:
    """Writes docs/asyncapi/<service>.json, or with --check fails if they are stale."""
    folder = Path(args.dir)
    stale = []
    for name, text in asyncapi_documents().items():
        path = folder / f"{name}.json"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(
            "AsyncAPI documents differ from what the code generates: "
            + ", ".join(stale)
            + "\nrun `mentorship asyncapi` and commit the result",
            file=sys.stderr,
        )
        return 1
    if args.check:
        print("AsyncAPI documents are up to date")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="mentorship", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run nats-server, SMTP catcher and the four services").set_defaults(
        func=cmd_up
    )
    demo = sub.add_parser("demo", help="run a sample cohort through the system")
    demo.add_argument("--keep-running", action="store_true", help="stay up after the demo")
    demo.set_defaults(func=cmd_demo)
    streams = sub.add_parser("streams", help="declare the MENTORSHIP stream (its owner's step)")
    streams.add_argument("--replicas", type=int, default=1)
    streams.set_defaults(func=cmd_streams)
    token = sub.add_parser("token", help="coordinators' API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token scoped to one program")
    create.add_argument("--program", required=True)
    create.add_argument("--label", default="coordinator")
    create.set_defaults(func=cmd_token_create)
    dlq = sub.add_parser("dlq", help="dead letters")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    ls = dlq_sub.add_parser("list", help="show parked messages and why")
    ls.add_argument("--service", choices=SERVICES)
    ls.add_argument("--show-payload", action="store_true")
    ls.set_defaults(func=cmd_dlq_list)
    replay = dlq_sub.add_parser("replay", help="re-drive parked messages")
    replay.add_argument("--service", choices=SERVICES)
    replay.add_argument("--seq", type=int, nargs="*", help="only these stream sequences")
    replay.set_defaults(func=cmd_dlq_replay)
    discard = dlq_sub.add_parser("discard", help="delete parked messages for good")
    discard.add_argument("--service", choices=SERVICES)
    discard.add_argument("--seq", type=int, nargs="+", required=True, help="stream sequences")
    discard.set_defaults(func=cmd_dlq_discard)
    api = sub.add_parser("asyncapi", help="generate docs/asyncapi/*.json")
    api.add_argument("--check", action="store_true", help="fail if the committed files are stale")
    api.add_argument("--dir", default=str(ASYNCAPI_DIR))
    api.set_defaults(func=cmd_asyncapi)
    migrate.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mentorship` console command."""
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (nats.errors.NoServersError, nats.errors.TimeoutError) as exc:
        url = Settings().nats_url
        print(
            f"error: cannot reach NATS at {url} ({exc!r}): is it running? "
            "Set MENTORSHIP_NATS_URL to the server `mentorship up` printed.",
            file=sys.stderr,
        )
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
