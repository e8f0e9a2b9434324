"""`mentorship`: up, demo, streams, token, dlq, asyncapi."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlparse

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from pydantic import ValidationError

from cli import feeds, migrate, outbox, roster, tokens
from cli.launcher import LaunchError, System
from cli.runtime import STATE_FILE, NatsTarget, nats_target
from shared.bus import STREAM, StreamMissing, connect_once, ensure_stream
from shared.deadletters import ParkedMessage, list_dead_letters, replay_dead_letter
from shared.settings import SERVICES, Settings

ASYNCAPI_DIR = Path("docs/asyncapi")
PERMISSIONS_VIOLATION = "permissions violation"
JetStreamWork = Callable[[JetStreamContext, NatsTarget], Awaitable[int]]


class CommandFailed(Exception):
    """A command could not do its work; the message is the one line the user sees."""


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Runs the whole system until Ctrl-C."""
    system = System(settings, external_nats="nats_url" in settings.model_fields_set)
    try:
        with system.running():
            print("mentorship is up; Ctrl-C stops everything.")
            print(f"  publish events to {system.nats_url} (subjects mentorship.<entity>.<verb>)")
            print(f"  insights API: {system.http_url('insights')}/docs")
            print(f"  URLs and pids: {system.data_dir / STATE_FILE} (CLI commands here use it)")
            code = system.wait_until_stopped()
            print("stopping ...")
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("stopped.")
    return code


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Runs the sample cohort through the system and shows what happened."""
    from cli.demo import run_demo

    try:
        return run_demo(settings, keep_running=args.keep_running)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _connect_failure(url: str) -> str:
    """Why nothing NATS answered at url, as far as a plain TCP connection can tell."""
    first = urlparse(url.split(",")[0].strip())
    address = (first.hostname or "127.0.0.1", first.port or 4222)
    try:
        with socket.create_connection(address, timeout=2):
            return "it accepts TCP connections but no NATS handshake completed"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return "no answer within 2s"
    except OSError as exc:
        return exc.strerror or str(exc)


def _unreachable(target: NatsTarget) -> str:
    return (
        f"cannot reach NATS at {target.url} ({_connect_failure(target.url)}; {target.origin}): "
        "is `mentorship up` running? set MENTORSHIP_NATS_URL to your server"
    )


def nats_problem(
    exc: Exception, target: NatsTarget, last_error: Exception | None, *, connecting: bool
) -> str:
    """One line for any NATS or JetStream failure: what went wrong, where, and what to do."""
    url = f"{target.url} ({target.origin})"
    said = f"{exc} {last_error or ''}".lower()
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in said:
        return (
            f"NATS at {url} refused the credentials (authorization violation): put the right "
            "user:password@ or token@ in MENTORSHIP_NATS_URL"
        )
    if PERMISSIONS_VIOLATION in said:
        return (
            f"NATS at {url} denied this user ({last_error or exc}): grant it publish and "
            "subscribe on $JS.API.> and mentorship.>, or use another user in MENTORSHIP_NATS_URL"
        )
    if connecting:
        return _unreachable(target)
    if isinstance(exc, StreamMissing):
        return str(exc)
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return (
            f"JetStream is not enabled on the NATS at {url}: start nats-server with -js, or set "
            "MENTORSHIP_NATS_URL to a server with JetStream"
        )
    if isinstance(exc, nats.js.errors.NotFoundError):
        return (
            f"stream {STREAM} does not exist on {url}: declare it with `mentorship streams` "
            "(its owner's step), or start `mentorship up`"
        )
    if isinstance(exc, nats.js.errors.APIError):
        return (
            f"JetStream at {url} refused the request: {exc.description} (error {exc.err_code}); "
            "see the server's log"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"NATS at {url} did not answer in time: retry; if it persists, check that JetStream "
            "is up there (a cluster without quorum answers nothing) and the server's log"
        )
    if isinstance(exc, OSError | nats.errors.ConnectionClosedError | nats.errors.NoServersError):
        return f"lost the connection to NATS at {url} ({exc!r}): retry, or check the server's log"
    return f"NATS at {url} failed: {type(exc).__name__}: {exc}; see the server's log"


NATS_ERRORS = (nats.errors.Error, OSError, StreamMissing)


def _on_jetstream(settings: Settings, work: JetStreamWork) -> int:
    """Runs one command's work on a short-lived connection to the NATS the command should use."""
    target = nats_target(settings)

    async def run() -> int:
        try:
            nc = await connect_once(target.url)
        except NATS_ERRORS as exc:
            raise CommandFailed(nats_problem(exc, target, None, connecting=True)) from exc
        try:
            return await work(nc.jetstream(), target)
        except NATS_ERRORS as exc:
            # a permissions violation arrives asynchronously; the request only times out
            raise CommandFailed(nats_problem(exc, target, nc.last_error, connecting=False)) from exc
        finally:
            with contextlib.suppress(*NATS_ERRORS):
                await nc.drain()

    return asyncio.run(run())


def cmd_streams(args: argparse.Namespace, settings: Settings) -> int:
    """Declares (or updates) the MENTORSHIP stream: the stream owner's step."""

    async def work(js: JetStreamContext, target: NatsTarget) -> int:
        await ensure_stream(js, replicas=args.replicas)
        print(f"stream {STREAM} ready on {target.url}")
        return 0

    return _on_jetstream(settings, work)


def by_original(parked: list[ParkedMessage]) -> list[list[ParkedMessage]]:
    """Dead letters grouped by the message they came from (one per consumer that failed)."""
    groups: dict[tuple[int, int], list[ParkedMessage]] = {}
    for p in parked:
        # without the original's sequence a letter is a group of its own
        key = (p.original_sequence, 0) if p.original_sequence else (0, p.sequence)
        groups.setdefault(key, []).append(p)
    return [groups[key] for key in sorted(groups)]


def cmd_dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    """Shows the dead letters of one service or all, grouped by original message."""

    async def work(js: JetStreamContext, target: NatsTarget) -> int:
        groups = by_original(await list_dead_letters(js, args.service))
        if not groups:
            print("no dead letters")
            return 0
        for letters in groups:
            first = letters[0]
            origin = f"#{first.original_sequence}" if first.original_sequence else "(unknown #)"
            print(
                f"message {origin} on {first.original_subject}: "
                f"{len(letters)} dead letter{'s' if len(letters) > 1 else ''}"
            )
            for p in letters:
                print(f"  #{p.sequence} {p.consumer} ({p.service}) at {p.at}")
                print(f"      reason: {p.reason}")
            if args.show_payload:
                print(f"  payload: {first.payload[:500]!r}")
        count = sum(len(letters) for letters in groups)
        print(
            f"{count} dead letters of {len(groups)} messages; re-drive with "
            "`mentorship dlq replay --seq N ...` (numbers after #) or `--all`"
        )
        return 0

    return _on_jetstream(settings, work)


def _chosen(parked: list[ParkedMessage], seqs: list[int] | None) -> list[ParkedMessage]:
    """The dead letters named by --seq (all of them without it); unknown numbers fail."""
    if not seqs:
        return parked
    known = {p.sequence: p for p in parked}
    unknown = [seq for seq in seqs if seq not in known]
    if unknown:
        raise CommandFailed(
            f"not dead letters: {', '.join(f'#{seq}' for seq in unknown)} "
            "(see `mentorship dlq list` for the numbers)"
        )
    return [known[seq] for seq in dict.fromkeys(seqs)]


def cmd_dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Re-drives dead letters, each to the consumer that failed on it."""
    if not args.seq and not args.all:
        raise CommandFailed(
            "say which dead letters to replay: --seq N [N ...] (numbers from `mentorship dlq "
            "list`), or --all to replay every one"
        )

    async def work(js: JetStreamContext, target: NatsTarget) -> int:
        chosen = _chosen(await list_dead_letters(js, args.service), args.seq)
        if not chosen:
            print("nothing to replay (see `mentorship dlq list`)")
        for n, p in enumerate(chosen, 1):
            await replay_dead_letter(js, p)
            print(
                f"[{n}/{len(chosen)}] replayed #{p.sequence} ({p.original_subject}) to {p.consumer}"
            )
        return 0

    return _on_jetstream(settings, work)


def cmd_dlq_discard(args: argparse.Namespace, settings: Settings) -> int:
    """Removes dead letters that will never be processed (e.g. garbage from a broken publisher)."""

    async def work(js: JetStreamContext, target: NatsTarget) -> int:
        for p in _chosen(await list_dead_letters(js, args.service), args.seq):
            await js.delete_msg(STREAM, p.sequence)
            print(f"discarded #{p.sequence} ({p.consumer}, {p.original_subject}: {p.reason})")
        return 0

    return _on_jetstream(settings, work)


def asyncapi_documents(settings: Settings | None = None) -> dict[str, str]:
    """Each service's AsyncAPI document, as the code generates it (settings change none of it)."""
    from shared.clock import SystemClock
    from shared.service import Service

    settings = settings or Settings()  # callers outside the CLI (tests) have no settings
    documents = {}
    for name in SERVICES:
        module = __import__(f"services.{name}.app", fromlist=["definition"])
        service = Service(module.definition(), settings, SystemClock())
        documents[name] = json.dumps(service.asyncapi(), indent=2, sort_keys=True) + "\n"
    return documents


def cmd_asyncapi(args: argparse.Namespace, settings: Settings) -> int:
    """Writes docs/asyncapi/<service>.json, or with --check fails if they are stale."""
    folder = Path(args.dir)
    stale = []
    for name, text in asyncapi_documents(settings).items():
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
    tokens.add_parser(sub)
    dlq = sub.add_parser("dlq", help="dead letters")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    ls = dlq_sub.add_parser("list", help="show parked messages and why, by original message")
    ls.add_argument("--service", choices=SERVICES)
    ls.add_argument("--show-payload", action="store_true")
    ls.set_defaults(func=cmd_dlq_list)
    replay = dlq_sub.add_parser("replay", help="re-drive parked messages to their consumer")
    replay.add_argument("--service", choices=SERVICES)
    which = replay.add_mutually_exclusive_group()
    which.add_argument("--seq", type=int, nargs="+", help="these dead letters (from dlq list)")
    which.add_argument("--all", action="store_true", help="every dead letter (of --service)")
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
    outbox.add_parser(sub)
    feeds.add_parser(sub)
    roster.add_parser(sub)
    return p


def _invalid_settings(exc: ValidationError) -> str:
    """One line naming each malformed MENTORSHIP_ variable."""
    problems = [
        f"MENTORSHIP_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
        for error in exc.errors()
    ]
    return "invalid settings: " + "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mentorship` console command: the process's one Settings object."""
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: {_invalid_settings(exc)}", file=sys.stderr)
        return 1
    try:
        code: int = args.func(args, settings)
    except CommandFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
