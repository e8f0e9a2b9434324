"""Coordinators' bearer tokens: random, recognisable, stored only as a SHA-256 digest."""

from __future__ import annotations

import base64
import re

from services.insights.tokens import TOKEN_PREFIX, new_token, token_digest


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
