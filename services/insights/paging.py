"""Keyset pagination of the API's lists: a page's `next_cursor` names its last row's sort key.

The next page is the rows after that key in the list's order (`WHERE (a, b) < (:a, :b)` on the
index the list is sorted by), so a page costs the same at any depth and rows inserted between
two requests neither repeat a row nor skip one: a new row sorting after the cursor comes on a
later page, one sorting before it (already passed) does not. The cursor is opaque to clients
(URL-safe base64 of JSON): the list it belongs to (with its filter) and the key.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

KeyPart = type[int] | type[str] | type[dt.datetime]


class BadCursor(ValueError):
    """A cursor this list did not hand out (altered, or of another list or filter)."""


def encode(list_name: str, key: Sequence[Any]) -> str:
    """The cursor after the row of this sort key in this list."""
    parts = [_part(value) for value in key]
    raw = json.dumps([list_name, *parts], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode(cursor: str, list_name: str, types: Sequence[KeyPart]) -> tuple[Any, ...]:
    """The sort key a cursor of this list names (BadCursor if it is not one)."""
    advice = "start again without a cursor and follow next_cursor (or the Link header)"
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(f"the cursor is not one insights handed out; {advice}") from None
    if not isinstance(data, list) or len(data) != 1 + len(types):
        raise BadCursor(f"the cursor is not one insights handed out; {advice}")
    if data[0] != list_name:
        raise BadCursor(f"the cursor belongs to another list or filter; {advice}")
    return tuple(_value(raw, kind, advice) for raw, kind in zip(data[1:], types, strict=True))


def _part(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
        return aware.astimezone(dt.UTC).isoformat()
    return value


def _value(raw: Any, kind: KeyPart, advice: str) -> Any:
    if kind is dt.datetime and isinstance(raw, str):
        try:
            value = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise BadCursor(f"the cursor's instant is not one; {advice}") from None
        if value.tzinfo is None:
            raise BadCursor(f"the cursor's instant has no zone; {advice}")
        return value.astimezone(dt.UTC)
    if kind is int and isinstance(raw, int) and not isinstance(raw, bool):
        if abs(raw) > 2**31:
            raise BadCursor(f"the cursor's number is out of range; {advice}")
        return raw
    if kind is str and isinstance(raw, str) and len(raw) <= 200:
        return raw
    raise BadCursor(f"the cursor is not one insights handed out; {advice}")
