"""`mentorship import`'s reading of an HR-style roster: good rows become events, bad rows say
their line and why (cli/roster.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cli.roster import BadRow, read_roster, working_hours
from shared.events import Role

NOW = dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)
SAMPLE = Path(__file__).parents[3] / "docs" / "samples" / "roster.csv"
HEADER = (
    "participant_id,email,display_name,role,timezone,languages,working_hours,skills_offered,"
    "skills_sought,goals,capacity,department,manager_id\n"
)


def test_the_shipped_sample_reads_without_a_problem():
    good, problems = read_roster(SAMPLE.read_text(encoding="utf-8"), "prog", NOW)
    assert problems == []
    assert len(good) == 8 and {e.program_id for e in good} == {"prog"}
    ana = good[0]
    assert (ana.role, ana.capacity, ana.languages, ana.manager_id) == (
        Role.MENTOR, 3, ["pt", "en"], "carla-m",
    )  # fmt: skip
    assert ana.skills_offered == ["python:5", "sql:4", "leadership"]
    assert len(ana.working_hours) == 5
    assert good[3].display_name == "Dana Kovač" and good[3].capacity is None
    assert (ana.seniority, ana.avoid) == (12, [])
    assert (good[-1].seniority, good[-1].avoid) == (3, ["ana-lima"])


def test_seniority_is_whole_years_and_avoid_a_list_of_ids():
    header = HEADER.rstrip("\n") + ",seniority,avoid\n"
    rows = (
        "e-1,e1@example.org,E One,mentee,Europe/Berlin,en,,,,,,,,4,m-1;m-2\n"
        "e-2,e2@example.org,E Two,mentee,Europe/Berlin,en,,,,,,,,four,\n"
    )
    good, problems = read_roster(header + rows, "prog", NOW)
    assert [(e.seniority, e.avoid) for e in good] == [(4, ["m-1", "m-2"])]
    assert [(p.line, p.reason) for p in problems] == [
        (3, "seniority: 'four' is not a whole number of years")
    ]


def test_bad_rows_are_reported_with_their_line_and_reason_and_the_good_rows_stay():
    text = HEADER + (
        "m-1,m1@example.org,Mentor One,mentor,Europe/Paris,en,,go,,,2,,\n"
        "e-1,not-an-email,Mentee One,mentee,Europe/Paris,en,,,go,,,,\n"
        "e-2,e2@example.org,Mentee Two,mentee,Mars/Olympus,en,,,go,,,,\n"
        "e-3,e3@example.org,Mentee Three,mentee,UTC,,,,,,,,\n"
        "m-2,m2@example.org,Mentor Two,mentor,UTC,en,,,,,,,\n"
        "e-4,e4@example.org,Mentee Four,mentee,UTC,en,Mon-Fri 9-17,,,,,,\n"
        "m-1,again@example.org,Mentor Again,mentor,UTC,en,,,,,1,,\n"
        "e-5,e5@example.org,Mentee Five,mentee,Asia/Tokyo,ja,Sat-Sun 10:00-14:00,,,,,,\n"
    )
    good, problems = read_roster(text, "prog", NOW)
    assert [e.participant_id for e in good] == ["m-1", "e-5"]
    reasons = {p.line: p.reason for p in problems}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "email" in reasons[3]
    assert "timezone" in reasons[4]
    assert reasons[5] == "missing languages"
    assert "capacity" in reasons[6]
    assert "Mon-Fri 09:00-17:00" in reasons[7]
    assert "on line 2 already" in reasons[8]
    assert [h.weekday for h in good[1].working_hours] == [5, 6]


def test_line_numbers_count_a_quoted_cell_over_two_lines():
    text = HEADER + (
        'e-1,e1@example.org,"Mentee\nOne",mentee,UTC,en,,,,,,,\n'
        "e-2,bad,Mentee Two,mentee,UTC,en,,,,,,,\n"
    )
    _, problems = read_roster(text, "prog", NOW)
    assert [p.line for p in problems] == [2, 4]  # the name's newline is refused too


def test_an_unknown_column_stops_the_import_before_any_row():
    with pytest.raises(BadRow, match=r"unknown column.*salary"):
        read_roster("participant_id,salary\nx,1\n", "prog", NOW)


def test_working_hours_groups_and_ranges():
    hours = working_hours("Mon-Wed 08:00-16:00; Fri 9:00-13:00")
    assert [(h["weekday"], h["start"], h["end"]) for h in hours] == [
        (0, "08:00", "16:00"), (1, "08:00", "16:00"), (2, "08:00", "16:00"), (4, "09:00", "13:00"),
    ]  # fmt: skip
    assert len(working_hours("")) == 5  # the default: Mon-Fri 09:00-17:00
