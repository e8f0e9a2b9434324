"""The consumer reads a message's stream sequence and delivery count as nats-py would."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from shared.consumer import delivery_of

V1 = "$JS.ACK.MENTORSHIP.pairing__participant_registered.3.1207.1185.1733068800000000000.42"
V2 = (
    "$JS.ACK._.ACCHASH.MENTORSHIP.pairing__participant_registered.2.88.80"
    ".1733068800000000000.0.random"
)
V2_DOMAIN = "$JS.ACK.hub.ACCHASH.MENTORSHIP.scheduling__pair_formed.1.7.7.1733068800000000000.3"


@pytest.mark.parametrize("reply", [V1, V2, V2_DOMAIN])
def test_delivery_of_reads_what_nats_py_metadata_reads(reply):
    msg = Msg(_client=None, subject="s", reply=reply)  # type: ignore[arg-type]
    metadata = msg.metadata
    assert delivery_of(msg) == (metadata.sequence.stream, metadata.num_delivered)
