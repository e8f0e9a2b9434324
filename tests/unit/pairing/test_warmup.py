"""The warm-up round compiles every path of the matcher before a real round needs it."""

from __future__ import annotations

from services.pairing.warmup import warm_up_round


def test_the_warm_up_round_pairs_some_and_leaves_some_out_at_a_proven_optimum():
    result = warm_up_round()
    # both the routing of pairs and leaving mentees out run (their compiled paths differ)
    assert result.pairs and result.unmatched_mentee_ids
    assert result.certificate is not None and result.certificate.gap == 0.0
    assert len({p.mentee_id for p in result.pairs}) == len(result.pairs)
