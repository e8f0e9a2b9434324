"""Coordinators' bearer tokens: random, recognisable, stored only as a SHA-256 digest."""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest

from services.insights.tokens import (
    TOKEN_PREFIX,
    Grant,
    TokenConfigError,
    new_token,
    parse_configured,
    token_digest,
    token_id,
)


def test_tokens_are_prefixed_mtk():
    assert TOKEN_PREFIX == "mtk_"
    assert new_token().startswith("mtk_")


def test_tokens_carry_256_bits_of_url_safe_randomness():
    token = new_token()
    body = token.removeprefix("mtk_")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", body)
    assert len(base64.urlsafe_b64decode(body + "=")) == 32


def test_tokens_are_different_every_time():
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200


def test_digest_is_sha256_hex():
    # NIST test vector for SHA-256("abc")
    assert token_digest("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_digest_of_a_token_is_64_lowercase_hex_characters_without_the_token():
    token = new_token()
    digest = token_digest(token)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert token.removeprefix("mtk_") not in digest


def test_digest_is_stable_for_a_token_and_differs_between_tokens():
    first, second = new_token(), new_token()
    assert token_digest(first) == token_digest(first)
    assert token_digest(first) != token_digest(second)
    assert len({token_digest(new_token()) for _ in range(100)}) == 100


LONG_A, LONG_B = "a" * 32, "b" * 40


def test_configured_tokens_map_to_their_programs():
    assert parse_configured(f"prog-a={LONG_A}, prog-b={LONG_B},") == {
        LONG_A: "prog-a",
        LONG_B: "prog-b",
    }


def test_a_short_configured_token_is_refused_with_what_to_do():
    with pytest.raises(TokenConfigError, match="has 8 characters; use at least 32") as info:
        parse_configured("prog-a=12345678")
    assert "mentorship token create" in str(info.value)


def test_one_token_listed_for_two_programs_is_refused():
    with pytest.raises(TokenConfigError, match="for programs 'prog-a' and 'prog-b'"):
        parse_configured(f"prog-a={LONG_A},prog-b={LONG_A}")


def test_the_same_token_listed_twice_for_one_program_is_fine():
    assert parse_configured(f"prog-a={LONG_A},prog-a={LONG_A}") == {LONG_A: "prog-a"}


@pytest.mark.parametrize("value", ["prog-a", "=token", "prog-a=", "prog-a:" + LONG_A])
def test_malformed_configured_tokens_name_the_expected_shape(value):
    with pytest.raises(TokenConfigError, match="program-a=token1"):
        parse_configured(value)


NOW = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)


def test_a_grant_is_refused_once_expired_or_revoked():
    assert Grant("p", None, None).refusal(NOW) is None
    assert Grant("p", NOW + dt.timedelta(seconds=1), None).refusal(NOW) is None
    assert "expired" in (Grant("p", NOW, None).refusal(NOW) or "")
    assert "revoked" in (Grant("p", None, NOW).refusal(NOW) or "")


def test_a_token_id_is_the_start_of_its_digest():
    token = new_token()
    assert token_id(token_digest(token)) == token_digest(token)[:12]
