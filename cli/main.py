"""`mentorship`: up, demo, streams, token, dlq, asyncapi, migrate, outbox, feeds, import, match,
rules."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nats.js import JetStreamContext
from pydantic import ValidationError

from cli import feeds, migrate, outbox, roster, rules, tokens
from cli.jetstream import CommandFailed, on_jetstream
from cli.launcher import LaunchError, System
from cli.runtime import STATE_FILE, NatsTarget
from shared.bus import STREAM, ensure_stream
from shared.deadletters import ParkedMessage, list_dead_letters, replay_dead_letter
from shared.settings import SERVICES, Settings

ASYNCAPI_DIR = Path("docs/asyncapi")


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


def cmd_streams(args: argparse.Namespace, settings: Settings) -> int:
    """Declares (or updates) the MENTORSHIP stream: the stream owner's step."""

    async def work(js: JetStreamContext, target: NatsTarget) -> int:
        await ensure_stream(js, replicas=args.replicas)
        print(f"stream {STREAM} ready on {target.url}")
        return 0

    return on_jetstream(settings, work)


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

    return on_jetstream(settings, work)


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

    return on_jetstream(settings, work)


def cmd_dlq_discard(args: argparse.Namespace, settings: Settings) -> int:
    """Removes dead letters that will never be processed (e.g. garbage from a broken publisher)."""

    async def work(js: JetStreamContext, target: NatsTarget) -> int:
        for p in _chosen(await list_dead_letters(js, args.service), args.seq):
            await js.delete_msg(STREAM, p.sequence)
            print(f"discarded #{p.sequence} ({p.consumer}, {p.original_subject}: {p.reason})")
        return 0

    return on_jetstream(settings, work)


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
    rules.add_parser(sub)
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
