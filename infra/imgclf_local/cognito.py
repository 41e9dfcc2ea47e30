"""The template's Cognito user pools on moto, and API Gateway's Cognito authorizer: id tokens checked, claims passed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .template import REGION, CognitoAuthorizer, StackTemplate

# Pool settings moto takes as create_user_pool takes them.
_POOL_PROPERTIES = ("UsernameAttributes", "AutoVerifiedAttributes", "AdminCreateUserConfig", "Policies")
_CLIENT_PROPERTIES = ("ExplicitAuthFlows", "AllowedOAuthFlows", "AllowedOAuthScopes", "AllowedOAuthFlowsUserPoolClient",
                      "SupportedIdentityProviders", "PreventUserExistenceErrors", "IdTokenValidity",
                      "AccessTokenValidity", "RefreshTokenValidity", "TokenValidityUnits")


class Unauthorized(Exception):
    """The request has no valid id token of the authorizer's pool (API Gateway answers 401)."""


def create_user_pools(template: StackTemplate, cognito: Any) -> None:
    """Create the template's user pools, their clients and domains; their ids become the template's Refs."""
    for lid in template.of_type("AWS::Cognito::UserPool"):
        props = template.properties(lid)
        pool = cognito.create_user_pool(PoolName=props["UserPoolName"],
                                        **{k: props[k] for k in _POOL_PROPERTIES if k in props})["UserPool"]
        template.physical_ids[lid] = pool["Id"]
    for lid in template.of_type("AWS::Cognito::UserPoolClient"):
        props = template.properties(lid)
        client = cognito.create_user_pool_client(
            UserPoolId=props["UserPoolId"], ClientName=props["ClientName"],
            GenerateSecret=bool(props.get("GenerateSecret", False)),
            **{k: props[k] for k in _CLIENT_PROPERTIES if k in props})["UserPoolClient"]
        template.physical_ids[lid] = client["ClientId"]
    for lid in template.of_type("AWS::Cognito::UserPoolDomain"):
        props = template.properties(lid)
        cognito.create_user_pool_domain(Domain=props["Domain"], UserPoolId=props["UserPoolId"])


def put_parameters(template: StackTemplate, ssm: Any) -> None:
    """The template's SSM parameters, with the values they resolve to now that every resource has its id."""
    for lid in template.of_type("AWS::SSM::Parameter"):
        props = template.properties(lid)
        ssm.put_parameter(Name=props["Name"], Value=str(props["Value"]), Type=props.get("Type", "String"),
                          Overwrite=True)


def claims_for_api_gateway(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as a REST API passes them in requestContext.authorizer.claims: every value a string."""
    return {name: value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict))
            else str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in claims.items()}


@dataclass
class IdTokenVerifier:
    """Checks an id token as API Gateway's Cognito authorizer does: the pool's key signed it (RS256), it is an id
    token of one of the pool's clients, its issuer is the pool, and it has not expired."""

    issuer: str
    client_ids: Callable[[], set[str]]
    jwks: Callable[[], dict]
    clock: Callable[[], float] = time.time
    leeway_s: int = 0

    def __post_init__(self) -> None:
        self._keys: KeySet | None = None
        self._lock = threading.Lock()

    def claims(self, token: str | None) -> dict[str, Any]:
        """The token's claims; Unauthorized when it is missing or not a valid id token of the pool."""
        if not token:
            raise Unauthorized("no token")
        try:
            decoded = jwt.decode(token.strip(), self._key_set(), algorithms=["RS256"])
        except (JoseError, ValueError) as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        claims = dict(decoded.claims)
        if claims.get("iss") != self.issuer:
            raise Unauthorized("token of another issuer")
        if claims.get("token_use") != "id":
            raise Unauthorized("not an id token")
        if claims.get("aud") not in self.client_ids():
            raise Unauthorized("token of another client")
        expires = claims.get("exp")
        if not isinstance(expires, (int, float)) or expires + self.leeway_s <= self.clock():
            raise Unauthorized("token expired")
        return claims

    def _key_set(self) -> KeySet:
        with self._lock:
            if self._keys is None:
                self._keys = KeySet.import_key_set(self.jwks())
            return self._keys


def moto_verifier(endpoint: str, pool_id: str, cognito: Any) -> IdTokenVerifier:
    """A verifier of the id tokens moto issues for a pool: moto serves the pool's keys as Cognito does."""

    def client_ids() -> set[str]:
        clients = cognito.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
        return {c["ClientId"] for c in clients}

    def jwks() -> dict:
        answer = requests.get(f"{endpoint}/{pool_id}/.well-known/jwks.json", timeout=10)
        answer.raise_for_status()
        return answer.json()

    return IdTokenVerifier(issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}", client_ids=client_ids,
                           jwks=jwks)


def authorizers(template: StackTemplate, endpoint: str, cognito: Any) -> dict[str, tuple[CognitoAuthorizer,
                                                                                         IdTokenVerifier]]:
    """Each Cognito authorizer of the template with the verifier of its pool's tokens."""
    return {name: (spec, moto_verifier(endpoint, template.physical_ref(spec.pool_logical_id), cognito))
            for name, spec in template.cognito_authorizers.items()}
