"""Samples for events this service's issue adds to the catalogue (merged into test_events).

One valid payload (beyond the envelope's program_id) per new event; kept apart per service so
parallel work on the catalogue does not edit one file.
"""

from __future__ import annotations

from typing import Any

from shared.events import Event
from shared.events.pairs import GoalReplanned, PairExpired

SAMPLES: dict[type[Event], dict[str, Any]] = {
    GoalReplanned: {
        "pair_id": "p1",
        "goal_id": "g1",
        "revision": 2,
        "target_date": "2027-06-30",
        "previous_target_date": "2027-05-31",
        "milestones": [
            {
                "milestone_id": "g1-1",
                "title": "first review",
                "kind": "review",
                "due_date": "2027-05-15",
            },
        ],
        "reason": "the project pivoted",
    },
    PairExpired: {
        "pair_id": "p1",
        "mentor_id": "m1",
        "mentee_id": "e1",
        "silent": ["m1"],
        "reason": "no answer within 72 hours",
    },
}
