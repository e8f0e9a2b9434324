"""Keyset pages of every list of the coordinators' API, on SQLite and PostgreSQL, through the
HTTP app of a running insights: following next_cursor (JSON) or the Link header (CSV) gives
every row once, in the list's order, while rows are inserted between page requests; a row
inserted after the pages passed its place is the only one not seen."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.insights.store import PairView, ParticipantView, SessionView, TimelineRow
from tests.integration.test_insights_api import auth
from tests.integration.test_insights_service import Insights, insights
from tests.support.waiting import settings_for

START = dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC)
_ids = itertools.count()


@dataclass(frozen=True)
class Listing:
    """A list of the API: its path, how a row is made, and what names a row in a page."""

    path: str
    row: Callable[[str, str, int], list[Any]]  # program, new id, a small number for its key
    name: Callable[[dict[str, Any]], str]
    csv_column: str


def _pair(program: str, pid: str, n: int, *, health: str | None = None) -> PairView:
    band = health or ("at_risk", "watch", "healthy")[n % 3]
    return PairView(
        program_id=program,
        pair_id=pid,
        mentor_id="mentor",
        mentee_id=f"mentee-{pid}",
        formed_at=START,
        state="formed",
        health=band,
        risk_score=n % 4,  # few distinct scores: ties broken by pair id
        reasons=[],
    )


def _mentee(program: str, pid: str, n: int) -> list[Any]:
    listed = ParticipantView(
        program_id=program,
        participant_id=pid,
        role="mentee",
        timezone="UTC",
        matched=False,
        active=True,
        unmatched_reason="waiting for the next matching round",
    )
    # a matched mentee beside it: never listed
    hidden = ParticipantView(
        program_id=program,
        participant_id=f"m{pid}",
        role="mentee",
        timezone="UTC",
        matched=True,
        active=True,
    )
    return [listed, hidden]


def _session(program: str, sid: str, n: int) -> list[Any]:
    return [
        SessionView(
            program_id=program,
            session_id=sid,
            pair_id=f"{program}-main",
            kind="regular",
            start=START + dt.timedelta(days=n % 3),  # starts shared: ties broken by id
            status=("held", "missed", "planned")[n % 3],
        )
    ]


def _entry(program: str, eid: str, n: int) -> list[Any]:
    return [
        TimelineRow(
            program_id=program,
            pair_id=f"{program}-main",
            at=START + dt.timedelta(hours=n % 3),
            event_id=eid,
            kind="session.held",
            summary=eid,
        )
    ]


LISTINGS = [
    Listing("pairs", lambda p, i, n: [_pair(p, i, n)], lambda r: r["pair_id"], "pair_id"),
    Listing(
        "pairs?health=at_risk",
        lambda p, i, n: [_pair(p, i, n, health="at_risk")],
        lambda r: r["pair_id"],
        "pair_id",
    ),
    Listing(
        "at-risk",
        lambda p, i, n: [_pair(p, i, n, health="at_risk")],
        lambda r: r["pair_id"],
        "pair_id",
    ),
    Listing("unmatched-mentees", _mentee, lambda r: r["participant_id"], "participant_id"),
    Listing("sessions", _session, lambda r: r["session_id"], "session_id"),
    Listing("sessions?status=held", _session, lambda r: r["session_id"], "session_id"),
    Listing("pairs/{program}-main/timeline", _entry, lambda r: r["summary"], "summary"),
]


class Pages:
    """Reads one list page by page, through the API, inserting rows between the requests."""

    def __init__(self, app: Insights, token: str, program: str, listing: Listing) -> None:
        self.app, self.token, self.program, self.listing = app, token, program, listing

    async def insert(self, keys: list[int]) -> list[str]:
        running = self.app.service.running
        assert running is not None
        made = []
        async with running.sessions() as session, session.begin():
            for n in keys:
                made.append(f"k{next(_ids):07d}")
                session.add_all(self.listing.row(self.program, made[-1], n))
        return made

    def url(self) -> str:
        return f"/programs/{self.program}/{self.listing.path.format(program=self.program)}"

    async def everything(self) -> list[str]:
        sep = "&" if "?" in self.url() else "?"
        response = await self.app.client.get(
            f"{self.url()}{sep}limit=1000", headers=auth(self.token)
        )
        assert response.status_code == 200, response.text
        return [self.listing.name(r) for r in response.json()["items"]]

    async def follow(
        self, limit: int, inserts: list[list[int]], *, as_csv: bool
    ) -> tuple[list[str], list[tuple[str, str | None]]]:
        """Every page's rows in order, and each inserted row with the last row seen when it
        was inserted (None: before the first page)."""
        seen: list[str] = []
        inserted: list[tuple[str, str | None]] = []
        sep = "&" if "?" in self.url() else "?"
        url: str | None = f"{self.url()}{sep}limit={limit}"
        pages = 0
        while url is not None:
            assert pages <= 40, "the pages never end"  # at most 24 rows, 1 a page at least
            fmt = "&format=csv" if as_csv and "format=csv" not in url else ""
            response = await self.app.client.get(url + fmt, headers=auth(self.token))
            assert response.status_code == 200, (url, response.text)
            if as_csv:
                rows = list(csv.DictReader(io.StringIO(response.text)))
                names = [row[self.listing.csv_column] for row in rows]
                link = response.headers.get("link")
                url = link.split(">")[0].removeprefix("<") if link else None
                if url is not None:
                    assert link is not None and link.endswith('rel="next"')
            else:
                body = response.json()
                names = [self.listing.name(r) for r in body["items"]]
                assert body["next_offset"] is None or pages == 0
                cursor = body["next_cursor"]
                url = f"{self.url()}{sep}limit={limit}&cursor={cursor}" if cursor else None
                assert (response.headers.get("link") is None) == (cursor is None)
            assert len(names) <= limit
            assert url is None or len(names) == limit
            seen += names
            if url is not None and pages < len(inserts):
                last = seen[-1] if seen else None
                inserted += [(n, last) for n in await self.insert(inserts[pages])]
            pages += 1
        return seen, inserted


def expected_rows(final: list[str], inserted: list[tuple[str, str | None]]) -> list[str]:
    """The list as it is now, but the rows inserted where the pages had already passed."""
    position = {name: at for at, name in enumerate(final)}
    passed = {
        name
        for name, last in inserted
        if name in position and last is not None and position[name] < position[last]
    }
    return [name for name in final if name not in passed]


async def check_listing(
    app: Insights,
    token: str,
    program: str,
    listing: Listing,
    initial: list[int],
    limit: int,
    inserts: list[list[int]],
    as_csv: bool,
) -> None:
    pages = Pages(app, token, program, listing)
    await pages.insert(initial)
    if listing.path.endswith("/timeline"):
        app_running = app.service.running
        assert app_running is not None
        async with app_running.sessions() as session, session.begin():
            session.add(_pair(program, f"{program}-main", 0))
    seen, inserted = await pages.follow(limit, inserts, as_csv=as_csv)
    final = await pages.everything()
    assert len(seen) == len(set(seen)), "a row came twice"
    assert seen == expected_rows(final, inserted), (
        listing.path,
        limit,
        initial,
        inserts,
        as_csv,
        inserted,
    )


@pytest.fixture
async def running(tmp_path, nats_server, js, database_url):
    async with insights(settings_for(tmp_path, nats_server.url, database_url)) as app:
        yield app


async def test_pages_by_cursor_give_every_row_once_while_rows_are_inserted(running):
    app = running
    tokens: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    examples = itertools.count()

    @given(
        listing=st.sampled_from(LISTINGS),
        initial=st.lists(st.integers(0, 11), max_size=12),
        limit=st.integers(1, 5),
        inserts=st.lists(st.lists(st.integers(0, 11), max_size=3), max_size=4),
        as_csv=st.booleans(),
    )
    @settings(
        max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def pages_are_whole(
        listing: Listing, initial: list[int], limit: int, inserts: list[list[int]], as_csv: bool
    ) -> None:
        program = f"pages-{next(examples)}"  # every example its own program: empty lists

        async def check() -> None:
            tokens[program] = await app.token_for(program)
            await check_listing(
                app, tokens[program], program, listing, initial, limit, inserts, as_csv
            )

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=120)

    await asyncio.to_thread(pages_are_whole)
    # every list was read both ways
    assert next(examples) >= 40


async def test_a_cursor_of_another_list_or_an_altered_one_is_refused_with_what_to_do(running):
    app = running
    program = "pages-refused"
    token = await app.token_for(program)
    pages = Pages(app, token, program, LISTINGS[0])
    await pages.insert([0, 1, 2])
    first = await app.client.get(
        f"/programs/{program}/pairs", params={"limit": 1}, headers=auth(token)
    )
    cursor = first.json()["next_cursor"]
    assert cursor and first.headers["link"].startswith(f"</programs/{program}/pairs?")
    for path, params in [
        ("pairs", {"cursor": cursor + "x"}),
        ("pairs", {"cursor": "not a cursor"}),
        ("at-risk", {"cursor": cursor}),  # another filter: another list
        ("sessions", {"cursor": cursor}),
        ("pairs", {"cursor": cursor, "offset": 1}),
    ]:
        response = await app.client.get(
            f"/programs/{program}/{path}", params=params, headers=auth(token)
        )
        assert response.status_code == 400, (path, params, response.text)
        assert "cursor" in response.json()["detail"]
    # offset pages still work, and say where the next starts
    by_offset = await app.client.get(
        f"/programs/{program}/pairs", params={"limit": 2, "offset": 1}, headers=auth(token)
    )
    body = by_offset.json()
    assert (len(body["items"]), body["next_offset"], body["next_cursor"]) == (2, None, None)
