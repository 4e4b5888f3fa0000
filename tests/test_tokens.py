"""Access tokens: Ed25519 signatures checked once, expiry checked on every use."""

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.auth import InvalidToken, TokenIssuer, TokenVerifier
from app.config import load_config


@pytest.fixture
def auth():
    config = load_config(env={}).auth
    key = Ed25519PrivateKey.generate()
    return TokenIssuer(key, config), TokenVerifier(key.public_key(), config), config


def test_a_remembered_token_still_expires(auth):
    issuer, verifier, _ = auth
    token = issuer.issue("u1", "w1", ttl=1)
    assert verifier.verify(token).user_id == "u1"
    assert verifier.verify(token).workspace_id == "w1"  # from the cache this time
    deadline = time.monotonic() + 5
    while True:
        try:
            verifier.verify(token)
        except InvalidToken as e:
            assert "expired" in str(e)
            break
        assert time.monotonic() < deadline, "a cached token outlived its exp"
        time.sleep(0.05)
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_tokens_of_another_key_or_audience_are_refused(auth):
    issuer, verifier, config = auth
    stranger = TokenIssuer(Ed25519PrivateKey.generate(), config)
    with pytest.raises(InvalidToken):
        verifier.verify(stranger.issue("u1", "w1"))
    other_audience = TokenIssuer(issuer.private_key, load_config(env={"FECHATTER_AUTH_AUDIENCE": "elsewhere"}).auth)
    with pytest.raises(InvalidToken):
        verifier.verify(other_audience.issue("u1", "w1"))
    # A refused token is not remembered as good.
    with pytest.raises(InvalidToken):
        verifier.verify(stranger.issue("u1", "w1"))
