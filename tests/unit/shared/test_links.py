import datetime as dt

import pytest

from shared.links import LinkExpired, LinkInvalid, LinkSigner, link_signer
from shared.settings import Settings

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
SECRET = "s" * 40


def test_a_signed_link_carries_its_data_until_it_expires() -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign("pair.respond", {"pair": "p1", "who": "m1"}, NOW + dt.timedelta(days=7))
    assert signer.verify(token, "pair.respond", NOW) == {"pair": "p1", "who": "m1"}
    with pytest.raises(LinkExpired, match="coordinator"):
        signer.verify(token, "pair.respond", NOW + dt.timedelta(days=7))


def test_a_link_for_another_purpose_or_secret_or_altered_is_refused() -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign("pair.respond", {"pair": "p1"}, NOW + dt.timedelta(days=1))
    with pytest.raises(LinkInvalid):
        signer.verify(token, "session.held", NOW)
    with pytest.raises(LinkInvalid):
        LinkSigner("t" * 40).verify(token, "pair.respond", NOW)
    with pytest.raises(LinkInvalid):
        altered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        signer.verify(altered, "pair.respond", NOW)


def test_a_short_secret_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="token_urlsafe"):
        LinkSigner("short")


def test_without_a_configured_secret_the_data_directory_keeps_one(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    token = link_signer(settings).sign("x", {}, NOW + dt.timedelta(hours=1))
    assert link_signer(Settings(data_dir=tmp_path)).verify(token, "x", NOW) == {}
    assert (tmp_path / "link-secret").stat().st_mode & 0o777 == 0o600


def test_a_link_url_points_at_the_answering_service_and_carries_a_token(tmp_path) -> None:
    from urllib.parse import parse_qs, urlsplit

    from shared.links import PAIR_RESPONSE, link_url

    settings = Settings(data_dir=tmp_path, pairing_public_url="https://pairing.example.org/")
    signer = LinkSigner(SECRET)
    url = link_url(settings, signer, PAIR_RESPONSE, {"proposal_id": "x"}, NOW + dt.timedelta(1))
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://pairing.example.org/links/pair-response"
    )
    token = parse_qs(parts.query)["t"][0]
    assert signer.verify(token, PAIR_RESPONSE.purpose, NOW) == {"proposal_id": "x"}
