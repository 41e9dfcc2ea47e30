"""How the review page signs people in: the reviewer pool's page client, its Cognito endpoint and hosted sign-in."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from imgclf import aws
from imgclf.errors import NotFound


@dataclass(frozen=True)
class SignIn:
    """What the page needs to sign in: the client id, the Cognito endpoint its form posts InitiateAuth to, and the
    hosted sign-in's base URL (empty where there is none, as on the local stack)."""

    client_id: str
    user_pool_id: str
    region: str
    endpoint: str
    hosted_ui: str = ""

    def page_values(self, redirect_uri: str) -> dict[str, str]:
        """The values the page reads (its sign-in form and the link to the hosted sign-in)."""
        values = {"client_id": self.client_id, "endpoint": self.endpoint, "region": self.region,
                  "hosted_ui": self.hosted_ui}
        if self.hosted_ui:
            values["authorize_url"] = f"{self.hosted_ui}/oauth2/authorize?" + urlencode({
                "client_id": self.client_id, "response_type": "code", "scope": "openid email profile",
                "redirect_uri": redirect_uri})
            values["token_url"] = f"{self.hosted_ui}/oauth2/token"
            values["redirect_uri"] = redirect_uri
        return values

    def origins(self) -> list[str]:
        """The origins the page's Content-Security-Policy must let it connect to."""
        return [o for o in (_origin(self.endpoint), _origin(self.hosted_ui)) if o]


def read_sign_in(ssm: Any, parameter: str, endpoint: str) -> SignIn:
    """The sign-in the stack's parameter describes (see ReviewSignInParameter in template.yaml); NotFound when the
    parameter is missing or not such a description."""
    with aws.translated(f"read {parameter}"):
        raw = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    try:
        value = json.loads(raw)
        return SignIn(client_id=str(value["client_id"]), user_pool_id=str(value["user_pool_id"]),
                      region=str(value.get("region", "")), endpoint=endpoint,
                      hosted_ui=_hosted_ui(str(value.get("hosted_ui") or "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise NotFound(f"{parameter} does not describe a sign-in") from exc


def sign_in_from(settings: Any) -> SignIn | None:
    """This environment's sign-in (None where the stack has none): the parameter it names, with the endpoint of
    this environment's cognito-idp client (Cognito's regional endpoint in AWS, moto on the local stack)."""
    if not settings.sign_in_parameter:
        return None
    endpoint = aws.client("cognito-idp").meta.endpoint_url.rstrip("/") + "/"
    found = read_sign_in(aws.client("ssm"), settings.sign_in_parameter, endpoint)
    # Hosted sign-in pages exist only where Cognito is AWS's own: moto (the local stack) serves none.
    if not (urlsplit(endpoint).hostname or "").endswith(".amazonaws.com"):
        return replace(found, hosted_ui="")
    return found


def _hosted_ui(url: str) -> str:
    return url.rstrip("/") if url.startswith("https://") else ""


def _origin(url: str) -> str:
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}" if split.scheme in ("http", "https") and split.netloc else ""


def add_reviewer(cognito: Any, pool_id: str, email: str, *, password: str | None = None) -> dict[str, Any]:
    """Make a reviewer's account in the pool: with a password it is ready to sign in with it; without one Cognito
    emails a temporary password, which the hosted sign-in asks to change. Conflict when the account exists,
    ConfigError when the password does not meet the pool's policy."""
    attributes = [{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}]
    options = {"MessageAction": "SUPPRESS"} if password else {"DesiredDeliveryMediums": ["EMAIL"]}
    with aws.translated(f"add reviewer {email}"):
        user = cognito.admin_create_user(UserPoolId=pool_id, Username=email, UserAttributes=attributes,
                                         **options)["User"]
        if password:
            cognito.admin_set_user_password(UserPoolId=pool_id, Username=email, Password=password, Permanent=True)
    return {"email": email, "username": user.get("Username", email),
            "status": "CONFIRMED" if password else user.get("UserStatus", "FORCE_CHANGE_PASSWORD")}


def list_reviewers(cognito: Any, pool_id: str) -> list[dict[str, Any]]:
    """Every account of the pool: email, status, enabled."""
    reviewers = []
    with aws.translated(f"list the reviewers of {pool_id}"):
        for page in cognito.get_paginator("list_users").paginate(UserPoolId=pool_id):
            for user in page.get("Users", []):
                attributes = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
                reviewers.append({"email": attributes.get("email", user["Username"]), "username": user["Username"],
                                  "status": user.get("UserStatus"), "enabled": user.get("Enabled", True)})
    return reviewers


def remove_reviewer(cognito: Any, pool_id: str, email: str) -> None:
    """Delete a reviewer's account (their decisions keep their name); NotFound when there is none."""
    with aws.translated(f"remove reviewer {email}"):
        cognito.admin_delete_user(UserPoolId=pool_id, Username=email)
