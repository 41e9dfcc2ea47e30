"""What routes take besides their parameters, injected per request: the app's services and the signer."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends, Request

from imgclf import keys
from imgclf.errors import NotFound

from .identity import reviewer_identity
from .services import Services

# The key of the app's context under which it passes its services factory to every request (app.ApiResolver).
SERVICES = "services"


def services(request: Request) -> Services:
    """The collaborators of the app that serves this request, from the factory it was built with."""
    return request.context[SERVICES]()


Collaborators = Annotated[Services, Depends(services)]


def signer(request: Request) -> str | None:
    """Who made the request, for the registry's promoted_by and the datasets' audit trail: the reviewer signed in
    (routes under /review/: the Cognito claims API Gateway passes on), else the IAM caller."""
    return reviewer_identity(request.resolved_event)


Signer = Annotated[str | None, Depends(signer)]


def existing_name(kind: str, value: str) -> str:
    """A path segment as a name; one that no item can have is simply not found."""
    try:
        return keys.check_name(kind, value)
    except ValueError as exc:
        raise NotFound(f"no {kind} {value[:100]!r}") from exc
