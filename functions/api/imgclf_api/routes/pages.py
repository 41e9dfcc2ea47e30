"""GET / and GET /review: the upload and review pages, each under a strict Content-Security-Policy."""

from __future__ import annotations

import pathlib
import secrets
from functools import cache
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Request, Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from imgclf.log import get_logger

from .. import openapi, training
from ..dependencies import services

logger = get_logger("api")
router = APIGatewayRouter()
PAGES = pathlib.Path(__file__).resolve().parents[1]


@router.get("/", summary="The upload page", tags=["page"], security=openapi.OPEN, responses=openapi.PAGE_RESPONSES)
def page() -> Response[str]:
    return _html_response("page.html", img_src="'self' blob: data:", form_action="'none'")


@router.get("/review", summary="The review page: look through a run's top losses and audit, and clean its dataset",
            description="Takes ?run={run id}. Its data routes (GET /training-runs/{id}, .../review, .../audit and "
                        "POST /datasets/{name}/edits) are IAM routes: in AWS a browser needs an authenticating proxy.",
            tags=["page"], security=openapi.OPEN, responses=openapi.PAGE_RESPONSES)
def review_page(request: Request) -> Response[str]:
    # The thumbnails are presigned S3 links: the policy lets images come from there and nowhere else.
    return _html_response("review.html", img_src=" ".join(filter(None, ("'self' data:", _thumbnail_origin(request)))),
                         form_action="'self'")


def _html_response(name: str, *, img_src: str, form_action: str) -> Response[str]:
    """A page under a strict policy: only its own nonce'd script and style, requests to its own origin."""
    nonce = secrets.token_urlsafe(16)
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src {img_src}; "
           f"connect-src 'self'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'")
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=_page_html(name).replace("{{nonce}}", nonce),
        headers={"Content-Security-Policy": csp, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer"},
    )


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
