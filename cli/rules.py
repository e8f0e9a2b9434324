"""`mentorship rules show|set FILE.json|reset --program P`: a program's stored round rules, through
pairing's coordinator HTTP (GET, PUT, DELETE /programs/{p}/rules) with
MENTORSHIP_PAIRING_COORDINATOR_SECRET.

A rules file is one JSON object of RoundRules (docs/pairing.md, "Round rules"); `match --rules
FILE.json` reads the same file for one round.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from cli.jetstream import CommandFailed
from cli.runtime import HttpTarget, http_target
from shared.events.pairs import RoundRules
from shared.settings import Settings

SECRET_VARIABLE = "MENTORSHIP_PAIRING_COORDINATOR_SECRET"


def read_rules_file(path: Path) -> RoundRules:
    """The rules in a JSON file; CommandFailed naming the file, each bad rule and what to write."""
    # imported here: the matcher's modules would cost every CLI command half a second
    from services.pairing.rounds import rule_problems

    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CommandFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return RoundRules.model_validate_json(text)
    except ValidationError as exc:
        said = "; ".join(f"{w}: {p}" if w else p for w, p in rule_problems(exc))
        raise CommandFailed(
            f"{path}: {said} (`mentorship rules show --program P` prints every rule)"
        ) from exc


def _answer(target: HttpTarget, response: httpx.Response) -> dict[str, Any]:
    """pairing's JSON answer; CommandFailed saying what to do about any other."""
    if response.status_code == 403:
        raise CommandFailed(
            f"pairing at {target.url} runs without a coordinator secret: start it with "
            f"{SECRET_VARIABLE} set, and set the same value here"
        )
    if response.status_code == 401:
        raise CommandFailed(
            f"pairing at {target.url} refused the coordinator secret: set {SECRET_VARIABLE} "
            "here to the value pairing runs with"
        )
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"detail": response.text[:300]}
    if response.status_code == 422:
        raise CommandFailed(str(body.get("detail", body)))
    if response.status_code != 200:
        raise CommandFailed(
            f"pairing at {target.url} answered {response.status_code}: {body.get('detail', body)}"
            f"; is it pairing there ({target.origin})? its log says more"
        )
    return body


def call(
    settings: Settings, method: str, program_id: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One request to pairing's /programs/{program_id}/rules; its answer."""
    secret = settings.pairing_coordinator_secret
    if secret is None:
        raise CommandFailed(
            f"set {SECRET_VARIABLE} to the coordinator secret pairing runs with (`mentorship up` "
            "passes its own environment to pairing)"
        )
    target = http_target(settings, "pairing")
    url = f"{target.url}/programs/{program_id}/rules"
    try:
        response = httpx.request(
            method,
            url,
            json=body,
            headers={"Authorization": f"Bearer {secret.get_secret_value()}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise CommandFailed(
            f"cannot reach pairing at {target.url} ({exc}; {target.origin}): is `mentorship up` "
            "running? set MENTORSHIP_DATA_DIR to its data directory, or "
            "MENTORSHIP_PAIRING_PUBLIC_URL / MENTORSHIP_PAIRING_HTTP_PORT to pairing"
        ) from exc
    return _answer(target, response)


def shown(view: dict[str, Any]) -> str:
    """The rules a round of the program uses, and where they come from."""
    rules = json.dumps(view["rules"], indent=2)
    if view["source"] == "program":
        stored = json.dumps(RoundRules.model_validate(view["stored"]).model_dump(exclude_none=True))
        where = f"stored for {view['program_id']} at {view['updated_at']} as {stored}"
    else:
        where = (
            f"the defaults: nothing is stored for {view['program_id']} (`mentorship rules set "
            f"FILE.json --program {view['program_id']}` stores some)"
        )
    return f"{rules}\n({where}; a round's own rules, `match --rules`, replace them)"


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    """Prints the rules a round of the program uses when it brings none."""
    print(shown(call(settings, "GET", args.program)))
    return 0


def cmd_set(args: argparse.Namespace, settings: Settings) -> int:
    """Stores the file's rules for the program (the whole set: what it leaves out is default)."""
    rules = read_rules_file(Path(args.file))
    print(
        shown(call(settings, "PUT", args.program, rules.model_dump(mode="json", exclude_none=True)))
    )
    return 0


def cmd_reset(args: argparse.Namespace, settings: Settings) -> int:
    """Forgets the program's stored rules: rounds use the defaults again."""
    print(shown(call(settings, "DELETE", args.program)))
    return 0


def add_parser(subparsers: Any) -> None:
    """Registers `mentorship rules show|set|reset` on the CLI's subcommands."""
    rules = subparsers.add_parser("rules", help="a program's round rules (weights, minimum hours)")
    sub = rules.add_subparsers(dest="rules_command", required=True)
    show = sub.add_parser("show", help="the rules rounds use: stored, or the defaults")
    show.set_defaults(func=cmd_show)
    store = sub.add_parser("set", help="store a JSON file's rules for the program")
    store.add_argument("file", help="one JSON object of rules (docs/pairing.md, 'Round rules')")
    store.set_defaults(func=cmd_set)
    reset = sub.add_parser("reset", help="forget the stored rules: the defaults again")
    reset.set_defaults(func=cmd_reset)
    for command in (show, store, reset):
        command.add_argument("--program", required=True)
