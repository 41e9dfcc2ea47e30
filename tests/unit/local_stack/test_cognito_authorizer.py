"""The local stack's Cognito authorizer: which id tokens pass as API Gateway's would, and the claims it passes on."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from imgclf_local.cognito import IdTokenVerifier, Unauthorized, claims_for_api_gateway
from imgclf_local.template import StackTemplate

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool"
CLIENT = "page-client"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "pool-key"})


@pytest.fixture
def verifier(key) -> IdTokenVerifier:
    return IdTokenVerifier(issuer=ISSUER, client_ids=lambda: {CLIENT},
                           jwks=lambda: {"keys": [key.as_dict(private=False)]}, clock=lambda: NOW)


def token(key: RSAKey, **changes) -> str:
    claims = {"iss": ISSUER, "aud": CLIENT, "token_use": "id", "sub": "u-1", "email": "ana@example.com",
              "cognito:username": "u-1", "email_verified": True, "iat": NOW - 60, "exp": NOW + 3600, **changes}
    return jwt.encode({"alg": "RS256", "kid": "pool-key"}, {k: v for k, v in claims.items() if v is not None}, key)


def test_an_id_token_of_the_pool_gives_its_claims(key, verifier):
    claims = verifier.claims(token(key))

    assert claims["email"] == "ana@example.com"
    assert claims["aud"] == CLIENT


@pytest.mark.parametrize("changes", [
    {"exp": NOW - 1},
    {"iss": "https://cognito-idp.us-east-1.amazonaws.com/another-pool"},
    {"aud": "another-client"},
    {"token_use": "access"},
    {"exp": None},
], ids=["expired", "other-issuer", "other-client", "access-token", "no-expiry"])
def test_a_token_the_authorizer_would_refuse_is_unauthorized(key, verifier, changes):
    with pytest.raises(Unauthorized):
        verifier.claims(token(key, **changes))


def test_a_token_signed_by_another_key_is_unauthorized(verifier):
    stranger = RSAKey.generate_key(2048, parameters={"kid": "pool-key"})

    with pytest.raises(Unauthorized):
        verifier.claims(token(stranger))


@pytest.mark.parametrize("value", [None, "", "not-a-jwt", "a.b.c", "Bearer x.y.z"])
def test_a_missing_or_malformed_header_is_unauthorized(verifier, value):
    with pytest.raises(Unauthorized):
        verifier.claims(value)


def test_a_tampered_payload_is_unauthorized(key, verifier):
    header, _, signature = token(key).split(".")
    forged = token(key, email="mallory@example.com").split(".")[1]

    with pytest.raises(Unauthorized):
        verifier.claims(f"{header}.{forged}.{signature}")


def test_claims_reach_the_handler_as_strings_as_api_gateway_passes_them():
    passed = claims_for_api_gateway({"email": "ana@example.com", "email_verified": True, "exp": NOW,
                                     "cognito:groups": ["reviewers"]})

    assert passed == {"email": "ana@example.com", "email_verified": "true", "exp": str(NOW),
                      "cognito:groups": '["reviewers"]'}


def test_the_template_routes_under_review_use_the_reviewer_pools_authorizer():
    template = StackTemplate(parameters={"Stage": "local"})

    authorizers = template.cognito_authorizers
    routes = template.functions["ApiFunction"].api_routes

    assert {name: a.pool_logical_id for name, a in authorizers.items()} == {"ReviewerAuthorizer": "ReviewerPool"}
    assert authorizers["ReviewerAuthorizer"].header == "Authorization"
    under_review = {(r.method, r.path) for r in routes if r.path.startswith("/review/")}
    assert under_review == {(r.method, r.path) for r in routes if r.authorizer == "ReviewerAuthorizer"}
    assert all(r.authorizer in ("AWS_IAM", "NONE") for r in routes if not r.path.startswith("/review/"))
    # each has its IAM twin for machines: the same method at the same path without /review
    iam = {(r.method, r.path) for r in routes if r.authorizer == "AWS_IAM"}
    assert {(method, path.removeprefix("/review")) for method, path in under_review} <= iam
