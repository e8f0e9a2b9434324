"""Samples for events this service's issue adds to the catalogue (merged into test_events).

One valid payload (beyond the envelope's program_id) per new event; kept apart per service so
parallel work on the catalogue does not edit one file.
"""

from __future__ import annotations

from typing import Any

from shared.events import Event

SAMPLES: dict[type[Event], dict[str, Any]] = {}
