"""Who made a request: the reviewer signed in to the Cognito pool, or the IAM identity that signed it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The id token claims that name a person, most readable first.
CLAIMS = ("email", "cognito:username", "username", "sub")


def reviewer_identity(event: Mapping[str, Any] | Any) -> str | None:
    """The identity to record for a request: a Cognito authorizer's claims (requestContext.authorizer.claims:
    email, else the user name, else sub) or the IAM caller (requestContext.identity: userArn, else caller); None for
    an anonymous request. Takes the raw API Gateway event or Powertools' event object."""
    raw = getattr(event, "raw_event", event)
    context = raw.get("requestContext") or {} if isinstance(raw, Mapping) else {}
    claims = (context.get("authorizer") or {}).get("claims") or {}
    for name in CLAIMS:
        if claims.get(name):
            return str(claims[name])
    identity = context.get("identity") or {}
    return identity.get("userArn") or identity.get("caller") or None
