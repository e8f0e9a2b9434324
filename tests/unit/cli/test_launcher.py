"""What the launcher writes where others can read it."""

from __future__ import annotations

from cli.launcher import without_credentials


def test_state_file_nats_urls_carry_no_credentials():
    assert without_credentials("nats://user:secret@nats.example.org:4222") == (
        "nats://nats.example.org:4222"
    )
    assert (
        without_credentials("nats://s3cr3t@a:4222, nats://b:4222") == "nats://a:4222,nats://b:4222"
    )
    assert without_credentials("nats://127.0.0.1:4322") == "nats://127.0.0.1:4322"
    assert without_credentials(None) is None
