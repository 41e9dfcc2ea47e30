"""GET / and GET /review: the upload and review pages, each under a strict Content-Security-Policy."""

from __future__ import annotations

import json
import pathlib
import secrets
from functools import cache
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Request, Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from imgclf.log import get_logger

from .. import openapi, training
from ..dependencies import services
from ..sign_in import SignIn

logger = get_logger("api")
router = APIGatewayRouter()
PAGES = pathlib.Path(__file__).resolve().parents[1]


@router.get("/", summary="The upload page", tags=["page"], security=openapi.OPEN, responses=openapi.PAGE_RESPONSES)
def page() -> Response[str]:
    return _html_response("page.html", img_src="'self' blob: data:", form_action="'none'")


@router.get("/review", summary="The review page: label uploads, look through a run's top losses and audit, "
                                "and clean its dataset",
            description="Takes ?run={run id}. Reviewers sign in to the stack's Cognito user pool (the page's form or "
                        "the hosted sign-in); the page then calls the routes under /review/ with their id token.",
            tags=["page"], security=openapi.OPEN, responses=openapi.PAGE_RESPONSES)
def review_page(request: Request) -> Response[str]:
    sign_in = _sign_in(request)
    values = sign_in.page_values(_page_url(request)) if sign_in else {}
    # The thumbnails are presigned S3 links: the policy lets images come from there and nowhere else. The sign-in
    # form talks to Cognito, the only other origin the page may reach.
    return _html_response("review.html", img_src=" ".join(filter(None, ("'self' data:", _thumbnail_origin(request)))),
                          form_action="'self'", connect_src=sign_in.origins() if sign_in else [],
                          values={"sign_in": _script_json(values)})


def _html_response(name: str, *, img_src: str, form_action: str, connect_src: list[str] | None = None,
                   values: dict[str, str] | None = None) -> Response[str]:
    """A page under a strict policy: only its own nonce'd script and style, requests to its own origin (and the
    origins connect_src adds); values fill the page's {{name}} markers."""
    nonce = secrets.token_urlsafe(16)
    connect = " ".join(["'self'", *(connect_src or [])])
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src {img_src}; "
           f"connect-src {connect}; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'")
    body = _page_html(name).replace("{{nonce}}", nonce)
    for marker, value in (values or {}).items():
        body = body.replace("{{" + marker + "}}", value)
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=body,
        headers={"Content-Security-Policy": csp, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer"},
    )


def _sign_in(request: Request) -> SignIn | None:
    try:
        return services(request).sign_in
    except Exception:  # the page still opens, and says that signing in is unavailable
        logger.warning("no sign-in for the review page", exc_info=True)
        return None


def _page_url(request: Request) -> str:
    """The review page's own URL (where the hosted sign-in sends reviewers back), as the browser reached it."""
    event = request.resolved_event
    host = event.headers.get("Host") or event.headers.get("host") or ""
    stage = event.request_context.stage
    # A custom domain or the local stack has no stage in the path; execute-api hostnames do.
    prefix = f"/{stage}" if host.endswith(".amazonaws.com") and stage else ""
    return f"https://{host}{prefix}/review" if host else ""


def _script_json(value: dict) -> str:
    """JSON to place inside a <script type="application/json"> element: no sequence can end the element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _thumbnail_origin(request: Request) -> str:
    """scheme://host of the presigned links to dataset images (a signature only: no request is made)."""
    try:
        s = services(request)
        url = training.presign_get(s.s3, s.settings.data_bucket, f"{s.settings.dataset_prefix}origin.jpg", 60)
    except Exception:  # the page still works, without thumbnails
        logger.warning("no origin for the review page's thumbnails", exc_info=True)
        return ""
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}" if split.scheme in ("http", "https") and split.netloc else ""


@cache
def _page_html(name: str) -> str:
    """A page of this package with the shared stylesheet (common.css) in place of its marker."""
    common = (PAGES / "common.css").read_text(encoding="utf-8")
    return (PAGES / name).read_text(encoding="utf-8").replace("/* {{common.css}} */", common.strip())
