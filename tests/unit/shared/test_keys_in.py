"""keys_in: composite keys grouped by their leading columns select exactly the rows named."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, MetaData, String, Table, create_engine, false, insert, select
from sqlalchemy.orm import DeclarativeBase, Session

from shared.db import keys_in

metadata = MetaData()
rows = Table(
    "rows",
    metadata,
    Column("program_id", String, primary_key=True),
    Column("kind", String, primary_key=True),
    Column("item_id", String, primary_key=True),
)
ALL = [(p, k, i) for p in "ab" for k in "xy" for i in "0123"]
engine = create_engine("sqlite://")
metadata.create_all(engine)
with engine.begin() as conn:
    conn.execute(
        insert(rows), [dict(zip(("program_id", "kind", "item_id"), r, strict=True)) for r in ALL]
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([*ALL, ("c", "x", "0"), ("a", "z", "9")]), max_size=12))
def test_exactly_the_named_rows(keys):
    columns = [rows.c.program_id, rows.c.kind, rows.c.item_id]
    with engine.connect() as conn:
        found = {tuple(r) for r in conn.execute(select(*columns).where(keys_in(columns, keys)))}
    assert found == set(keys) & set(ALL)


def test_no_keys_matches_nothing():
    assert str(keys_in([rows.c.item_id], [])) == str(false())


class Base(DeclarativeBase):
    pass


class Row(Base):
    __table__ = rows


def test_orm_attributes_select_the_same_rows():
    keys = [("a", "x", "1"), ("b", "y", "3"), ("c", "x", "0")]
    with Session(engine) as session:
        found = session.scalars(
            select(Row).where(keys_in([Row.program_id, Row.kind, Row.item_id], keys))
        )
        assert {(r.program_id, r.kind, r.item_id) for r in found} == {
            ("a", "x", "1"),
            ("b", "y", "3"),
        }
